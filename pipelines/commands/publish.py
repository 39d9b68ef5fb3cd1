"""``botyard publish``: upload every compiled pipeline to a KFP server as a new pipeline version (for CI)."""

from __future__ import annotations

import argparse

from botyard.components.base.errors import ConfigError
from botyard.pipelines.commands.options import HOST_ENV, add_kfp_arguments, kfp_endpoint, table

EXAMPLE = """example (CI, after `botyard compile --output-dir build/pipelines --check`):
  botyard publish --host https://kubeflow.example.com/pipeline --namespace team-bots \\
      --token-file /var/run/secrets/kubeflow/pipelines/token --version 0.2.0-$GIT_SHA
"""


def handle(args: argparse.Namespace) -> int:
    from botyard.pipelines.kfp.publish import publish

    endpoint = kfp_endpoint(args)
    if endpoint is None:
        raise ConfigError(f"botyard publish needs --host URL (the KFP endpoint; default ${HOST_ENV})")
    done = publish(args.pipelines_dir, endpoint, args.version)
    print(f"botyard: published {len(done)} pipeline(s) from {args.pipelines_dir} to {endpoint.host} as version {args.version}")
    print(table(["PIPELINE", "VERSION", "ACTION", "PIPELINE ID", "VERSION ID", "FILE"],
                [[d.pipeline, d.version, d.action, d.pipeline_id, d.version_id, d.path] for d in done]))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "publish",
        help="upload every compiled pipeline (build/pipelines/*.yaml) to KFP as a new pipeline version",
        description="Load every compiled pipeline in --pipelines-dir back with kfp, then upload each as the version "
        "--version of the pipeline it names (pipelineInfo.name: bot-training, fleet-training), creating the pipeline "
        "the first time. Publishing the same files under the same version again changes nothing; other content under "
        "a version name already used is refused (exit code 2).",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_kfp_arguments(p)
    p.add_argument("--version", required=True, metavar="V", help="the version name, e.g. 0.2.0 or 0.2.0-<git sha>")
    p.add_argument("--pipelines-dir", default="build/pipelines", metavar="DIR", help="compiled pipelines (default: build/pipelines)")
    p.set_defaults(handler=handle)
