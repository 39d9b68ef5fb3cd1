"""The smoke check of a rollout: one real utterance through the served model, answered by the new version.

The pipeline's deploy step takes the utterance from the bot's test split. The check sends a
KServe V1 request (``POST <url>/v1/models/<model>:predict``) and passes once the answer is a
200 whose prediction names the deployed ``model_version``, trying again until ``timeout_s``:
a RawDeployment rolls its pods over, and the shared predictor takes up a newly promoted
version at its next poll of the store, so the first answers may still come from the old one.
On timeout it raises ``DeployError`` with the last answer seen.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Callable

from botyard.components.base.errors import DeployError

MODEL_VERSION = "model_version"  # the predictor's per-prediction field (predictor.model)
REQUEST_TIMEOUT_S = 10.0
_MAX_BODY_IN_MESSAGE = 300


def first_utterance(utterances) -> str:
    """The utterance to send: the first non-blank one (the test split's order is seeded)."""
    for text in utterances:
        if isinstance(text, str) and text.strip():
            return text
    raise DeployError("no utterance to smoke-check the rollout with: the test split is empty")


@dataclass
class SmokeCheck:
    utterance: str
    model_name: str  # the name in /v1/models/<name>: the InferenceService name (per-bot) or the bot id (shared)
    version: str
    timeout_s: float = 120.0
    interval_s: float = 2.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    answers: list[str] = field(default_factory=list, repr=False)  # what each try saw, for the report

    def _try(self, url: str) -> str | None:
        """``None`` when ``version`` answered, else what was seen instead."""
        endpoint = f"{url.rstrip('/')}/v1/models/{self.model_name}:predict"
        request = urllib.request.Request(
            endpoint, data=json.dumps({"instances": [self.utterance]}).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code} from {endpoint}: {exc.read()[:_MAX_BODY_IN_MESSAGE].decode(errors='replace')}"
        except (urllib.error.URLError, OSError) as exc:
            return f"{endpoint} unreachable ({getattr(exc, 'reason', exc)})"
        try:
            prediction = json.loads(raw)["predictions"][0]
            answered = prediction[MODEL_VERSION]
        except (ValueError, KeyError, IndexError, TypeError):
            return f"HTTP 200 from {endpoint} without a prediction: {raw[:_MAX_BODY_IN_MESSAGE].decode(errors='replace')}"
        if answered != self.version:
            return f"version {answered} answered, not {self.version}"
        return None

    def __call__(self, url: str) -> bool:
        deadline = self.clock() + self.timeout_s
        while True:
            problem = self._try(url)
            self.answers.append(problem or f"version {self.version} answered")
            if problem is None:
                return True
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise DeployError(
                    f"{self.utterance!r} sent to model '{self.model_name}' for {self.timeout_s:g}s: "
                    f"never answered by version {self.version}; last: {problem}"
                )
            self.sleep(min(self.interval_s, remaining))
