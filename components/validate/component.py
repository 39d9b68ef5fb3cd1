"""KFP interface of the validate step."""

from kfp.dsl import Dataset, Input, Markdown, Output

from botyard.components.base.kfp_component import botyard_component


@botyard_component
def validate(
    dataset: Input[Dataset],
    data_uri: str,
    min_examples_per_intent: int,
    validated: Output[Dataset],
    report: Output[Markdown],
):
    """Check the training data; fail the run with one message naming the file and the rows at fault.

    Args:
        dataset: Canonical table from the ingest step.
        data_uri: The original file, named in messages.
        min_examples_per_intent: Fewer examples for any intent fails the run.

    Returns:
        validated: The same table, passed on only when it is valid.
        report: Per-intent counts, errors and warnings, rendered in the KFP UI.
    """
    from botyard.components.base.config import ValidationConfig
    from botyard.components.validate.core import validate as run_validate

    run_validate(dataset.path, data_uri, ValidationConfig(min_examples_per_intent=min_examples_per_intent), validated.path, report.path)
    validated.metadata.update(dict(dataset.metadata))
