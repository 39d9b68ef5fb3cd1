"""The training schedule fits the bot's data: its number of utterances and of intents."""

from botyard.components.base.config import TrainConfig
from botyard.components.train.core import plan_schedule


def test_a_small_bot_gets_small_batches_and_many_epochs():
    schedule = plan_schedule(TrainConfig(), n_train=200, n_intents=13)
    assert schedule.batch_size == 12 and schedule.steps_per_epoch == 17
    assert schedule.max_steps >= TrainConfig().min_steps  # it is not stopped after a few noisy epochs
    assert schedule.patience_epochs >= TrainConfig().patience_steps / schedule.steps_per_epoch


def test_many_intents_get_more_steps_than_few_on_the_same_number_of_utterances():
    few, many = plan_schedule(TrainConfig(), 15_100, n_intents=7), plan_schedule(TrainConfig(), 15_100, n_intents=151)
    assert few.batch_size == many.batch_size == 128
    assert few.max_epochs == 6  # 600 steps of 118
    assert many.max_epochs == 11 and many.max_steps >= 8 * 151  # min_steps_per_intent


def test_epochs_stay_within_their_bounds():
    assert plan_schedule(TrainConfig(epochs=4), 100, n_intents=150).max_epochs == 4
    assert plan_schedule(TrainConfig(min_epochs=5, min_steps=0, min_steps_per_intent=0), 100_000, n_intents=2).max_epochs == 5
