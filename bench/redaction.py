"""Time the redaction of provider text (lib.safety.Redactor, with a generated-looking key) on
ordinary and adversarial texts of growing length, one call each, and a streamed answer as
lib/providers/stream.py redacts it (thousands of small pieces). Prints one JSON object:
{"one_call_s": {text: {chars: seconds}}, "stream_s": {chars: seconds}}; times are best of three,
in seconds. Linear redaction shows as seconds that double with the characters."""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.providers.endpoints import Endpoint  # noqa: E402
from lib.providers.stream import Outcome, _Answer  # noqa: E402
from lib.safety import Redactor  # noqa: E402

KEY = "sk-proj-9Qw3ErTyUi8Op4As5Df6Gh7Jk8Lz9Xc0Vb1Nm2"
TEXTS = {  # a unit repeated: prose, masks inside runs of key characters, ellipses, base64
    "prose": "The Great Leap Forward began in 1958. ",
    "ab--": "ab--",
    "a__": "a__",
    "wait...": "Wait... ",
    "base64": "QUJDRGVmZ2hpamtsbW5vcA+/=",
}


def best(run, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return round(min(times), 4)


def streamed(chars: int) -> float:
    """One answer of `chars` characters in 8-character pieces through the stream's redaction."""
    endpoint = Endpoint(id="e", name="e", base_url="http://127.0.0.1:9/v1", model="m", key_env="K")
    text = ("Wait... " * (chars // 8 + 1))[:chars]

    def run() -> None:
        answer = _Answer(endpoint, Outcome())
        answer.redact = Redactor(key=KEY)
        for i in range(0, len(text), 8):
            answer.add(text[i : i + 8], "")
        answer.add("", "", final=True)

    return best(run)


def main() -> None:
    redact = Redactor(["a-url-password"], key=KEY)
    sizes = (16_000, 64_000, 256_000)
    one = {
        name: {n: best(lambda u=unit, n=n: redact((u * (n // len(u) + 1))[:n])) for n in sizes}
        for name, unit in TEXTS.items()
    }
    stream = {n: streamed(n) for n in (10_000, 50_000)}
    print(json.dumps({"one_call_s": one, "stream_s": stream}))


if __name__ == "__main__":
    main()
