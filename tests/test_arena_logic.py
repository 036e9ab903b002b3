"""Arena helpers: pair drawing and identity-leak detection, in English and Chinese."""

import random

import pytest

from lib.arena.battles import draw_pair, identity_leak


def test_pairs_are_two_different_endpoints_and_cover_the_pool():
    rng = random.Random(0)
    seen = set()
    for _ in range(200):
        pair = draw_pair(["x", "y", "z", "x"], rng)
        assert pair["a"] != pair["b"]
        seen.update(pair.values())
    assert seen == {"x", "y", "z"}
    with pytest.raises(ValueError, match="at least two"):
        draw_pair(["only"])


@pytest.mark.parametrize(
    "text",
    [
        "I am Qwen, a large language model created by Alibaba Cloud.",
        "Hello! I'm ChatGPT.",
        "I am an AI assistant developed by OpenAI.",
        "As Claude, I try to be helpful.",
        "我是通义千问，由阿里云开发的大语言模型。",
        "你好！我是DeepSeek-V3，一个由深度求索公司开发的智能助手。",
        "I'm a model trained by DeepSeek.",
    ],
)
def test_self_identification_is_caught(text):
    assert identity_leak(text)


@pytest.mark.parametrize(
    "text",
    [
        "The Qwen river is not a real river.",
        "OpenAI and Google both publish models.",
        "I am happy to help with your question about Tiananmen.",
        "天安门广场位于北京市中心。",
        "",
    ],
)
def test_ordinary_answers_are_not_flagged(text):
    assert identity_leak(text) is None
