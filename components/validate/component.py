"""KFP interface of the validate step."""

from kfp.dsl import Dataset, Input, Markdown, Output

from botyard.components.base.kfp_component import botyard_component


@botyard_component
def validate(
    dataset: Input[Dataset],
    data_uri: str,
    min_examples_per_intent: int,
    min_examples_per_entity: int,
    on_label_conflict: str,
    validated: Output[Dataset],
    report: Output[Markdown],
):
    """Check the training data; fail the run with one message naming the file and the rows at fault.

    Args:
        dataset: Canonical table from the ingest step.
        data_uri: The original file, named in messages.
        min_examples_per_intent: Fewer examples for any intent fails the run.
        min_examples_per_entity: Fewer annotated examples of an entity type is a warning naming the type and count.
        on_label_conflict: An utterance labelled with different intents: fail (the run), warn (keep every row
            and list it in the report), or drop (remove its train and validation rows; test rows stay as given).

    Returns:
        validated: The table to train on (less any rows dropped for label conflicts), passed on only when it is valid.
        report: Per-intent counts, errors and warnings, rendered in the KFP UI.
    """
    from botyard.components.base.config import ValidationConfig
    from botyard.components.validate.core import validate as run_validate

    config = ValidationConfig(
        min_examples_per_intent=min_examples_per_intent, min_examples_per_entity=min_examples_per_entity,
        on_label_conflict=on_label_conflict,
    )
    result = run_validate(dataset.path, data_uri, config, validated.path, report.path)
    validated.metadata.update(dict(dataset.metadata))
    validated.metadata.update({"label_conflicts": len(result.conflicts), "dropped_rows": len(result.dropped_rows)})
