"""One KFP experiment per bot, ``bot-<bot_id>``: it groups the bot's runs and its schedule."""

from __future__ import annotations

import json

from botyard.pipelines.kfp.client import REQUEST_TIMEOUT_S, Connection, filter_json, status_of
from botyard.pipelines.kfp.naming import LABELS_KEY, experiment_name


def find_experiment(connection: Connection, name: str):
    """The experiment named ``name`` (in the connection's namespace), or None."""
    found = connection.client.experiments.experiment_service_list_experiments(
        filter=filter_json(display_name=name), page_size=2, _request_timeout=REQUEST_TIMEOUT_S, **connection.scope()
    )
    experiments = [e for e in found.experiments or [] if e.display_name == name]
    return experiments[0] if experiments else None


def ensure_experiment(connection: Connection, bot_id: str) -> str:
    """The id of the bot's experiment ``bot-<bot_id>``, created on first use."""
    import kfp_server_api

    name = experiment_name(bot_id)
    with connection.errors(f"creating experiment '{name}'"):
        experiment = find_experiment(connection, name)
        if experiment is None:
            body = kfp_server_api.V2beta1Experiment(
                display_name=name, description=json.dumps({LABELS_KEY: {"bot_id": bot_id}}), namespace=connection.namespace
            )
            try:
                experiment = connection.client.experiments.experiment_service_create_experiment(body, _request_timeout=REQUEST_TIMEOUT_S)
            except kfp_server_api.ApiException as exc:
                if status_of(exc) != 409 or (experiment := find_experiment(connection, name)) is None:
                    raise
    return experiment.experiment_id
