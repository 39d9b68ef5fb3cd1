"""KFP interface of the evaluate step."""

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from botyard.components.base.kfp_component import botyard_component


@botyard_component
def evaluate(
    model: Input[Model],
    val_data: Input[Dataset],
    test_data: Input[Dataset],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    confusion_matrix: Output[ClassificationMetrics],
    report: Output[Markdown],
    misclassified: Output[Dataset],
    threshold_config: dict,
):
    """Score the model on the test split and choose its out-of-scope threshold on validation data.

    Args:
        model: Trained model folder from the train step.
        val_data: Validation rows (threshold choice).
        test_data: Test rows (metrics).
        threshold_config: ThresholdConfig values (min_oos_recall, reject_budget): how the out-of-scope threshold is chosen.

    Returns:
        evaluation: Folder with evaluation.json, confusion_matrix.csv, per_intent.md, misclassified.csv.
        metrics: Accuracy, macro-F1, in-scope accuracy, out-of-scope recall, threshold.
        confusion_matrix: Confusion matrix rendered by the KFP UI.
        report: Per-intent precision / recall / F1 table.
        misclassified: Test utterances the model got wrong.
    """
    import os
    import shutil

    from botyard.components.base import contracts as c
    from botyard.components.base.config import ThresholdConfig
    from botyard.components.evaluate.core import evaluate_model_dir, per_intent_markdown
    from botyard.components.base.table import read_table

    os.makedirs(evaluation.path, exist_ok=True)
    result = evaluate_model_dir(model.path, read_table(val_data.path), read_table(test_data.path), evaluation.path,
                                ThresholdConfig.from_parameters(threshold_config))
    for name, value in result.logged_metrics().items():
        metrics.log_metric(name, value)
    confusion_matrix.log_confusion_matrix(result.labels, result.confusion.tolist())
    with open(report.path, "w", encoding="utf-8") as f:
        f.write(per_intent_markdown(result))
    shutil.copyfile(os.path.join(evaluation.path, c.MISCLASSIFIED_FILE), misclassified.path)
