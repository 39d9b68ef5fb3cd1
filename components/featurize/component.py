"""KFP interface of the featurize step."""

from kfp.dsl import Artifact, Dataset, Input, Output

from botyard.components.base.kfp_component import botyard_component


@botyard_component
def featurize(train_data: Input[Dataset], train_config: dict, featurizer: Output[Artifact]):
    """Learn the text featurizer (word vocabulary, word and character n-gram TF-IDF tables) from the training split.

    Args:
        train_data: Training rows; validation and test rows never reach the vocabularies.
        train_config: TrainConfig values (max_tokens, sequence_length, max_ngrams, max_char_ngrams are read here).

    Returns:
        featurizer: Folder with featurizer.json, which train builds on and exports inside the SavedModel.
    """
    from botyard.components.base.config import TrainConfig
    from botyard.components.base.table import read_table
    from botyard.components.featurize.core import featurize as run_featurize

    sizes = run_featurize(read_table(train_data.path), TrainConfig.from_parameters(train_config), featurizer.path)
    featurizer.metadata.update({"vocabulary_sizes": sizes})
