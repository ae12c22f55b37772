"""Text domains from installed packages: each present, seeded splits that never overlap."""

from __future__ import annotations

import pytest

from olsim.stream.text import DOMAINS, domain_text, text_domains


def test_every_domain_has_text_and_they_differ() -> None:
    texts = {d: domain_text(d, 4096) for d in DOMAINS}
    assert all(len(t) == 4096 for t in texts.values())
    assert len(set(texts.values())) == len(DOMAINS)
    assert b"def " in texts["python"] and b"," in texts["csv"]


def test_splits_are_seeded_disjoint_blocks_of_the_domain() -> None:
    (a,) = text_domains(0, ("rst",), size=8192, block=256)
    (b,) = text_domains(0, ("rst",), size=8192, block=256)
    (c,) = text_domains(1, ("rst",), size=8192, block=256)
    assert a == b and a != c
    text = domain_text("rst", 8192)
    blocks = {text[i : i + 256] for i in range(0, 8192, 256)}
    parts = [a.train, a.val, a.test]
    assert sum(len(p) for p in parts) == 8192
    for p in parts:  # whole blocks of the domain, each in one split only
        assert all(p[i : i + 256] in blocks for i in range(0, len(p), 256))
    assert not {a.test[i : i + 256] for i in range(0, len(a.test), 256)} & {
        a.train[i : i + 256] for i in range(0, len(a.train), 256)
    }


def test_unknown_domains_and_too_much_text_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown text domain"):
        domain_text("latin", 10)
    with pytest.raises(ValueError, match="fewer than"):
        domain_text("rst", 10**8)
