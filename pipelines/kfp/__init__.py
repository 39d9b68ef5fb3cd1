"""botyard on Kubeflow Pipelines: submit a bot's training, follow runs, schedule retraining, publish pipelines.

How botyard maps onto KFP v2's objects::

    pipeline    bot-training                            one KFP pipeline for every bot
    version     <botyard version>-<sha256(YAML)[:12]>   one per code version: looked up first, uploaded once
    experiment  bot-<bot_id>                            one per bot: holds its runs and its schedule
    run         "<bot_id> <trigger> data=<hash[:12]>"   description: {"botyard_labels": {...}} (JSON)
    schedule    recurring run bot-<bot_id>-schedule     cron, max_concurrency=1, no_catchup=True

One job per module::

    naming             the names above, botyard's version, the trigger-label check
    cron               cron expressions checked and normalised to KFP's 6 fields
    parameters         pipeline-parameter and cluster-URI checks, the data fingerprint
    client             connecting (health probe, shared client per endpoint), error mapping
    pipeline_versions  compiling bot_training, finding or uploading pipelines and versions
    experiments        the per-bot experiment
    runs               submit a run (KFP or kfp.local), a run's state, listing runs
    schedules          create, list, pause, resume and delete a bot's schedule
    publish            compiled pipelines read back with kfp, uploaded as a named version (CI)
"""
