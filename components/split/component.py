"""KFP interface of the split step."""

from kfp.dsl import Dataset, Input, Output

from botyard.components.base.kfp_component import botyard_component


@botyard_component
def split(
    dataset: Input[Dataset],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    train_data: Output[Dataset],
    val_data: Output[Dataset],
    test_data: Output[Dataset],
):
    """Stratified, seeded train/validation/test split (the data's own split column wins when given).

    Args:
        dataset: Validated canonical table.
        val_fraction: Share of each intent held out for early stopping and the out-of-scope threshold.
        test_fraction: Share of each intent held out for evaluation.
        seed: Split seed; the same data and seed always split the same way.

    Returns:
        train_data: Training rows.
        val_data: Validation rows.
        test_data: Test rows.
    """
    from botyard.components.base import contracts as c
    from botyard.components.base.config import SplitConfig
    from botyard.components.split.core import split_table
    from botyard.components.base.table import read_table, write_table

    parts = split_table(read_table(dataset.path), SplitConfig(val_fraction=val_fraction, test_fraction=test_fraction, seed=seed))
    for name, artifact in (("train", train_data), ("val", val_data), ("test", test_data)):
        write_table(parts[name], artifact.path)
        artifact.metadata.update({c.META_ROWS: len(parts[name]), c.META_INTENTS: int(parts[name][c.INTENT].nunique())})
