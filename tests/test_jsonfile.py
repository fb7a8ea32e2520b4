"""read_json/parse_json turn every malformed input into one EdgeqError line."""
import pytest

from edgeq.errors import EdgeqError
from edgeq.jsonfile import MAX_BYTES, parse_json, read_json


@pytest.mark.parametrize("text, says", [("[" * 100_000 + "]" * 100_000, "nested too deep"),
                                        ("{", "not valid JSON"), (b"\xff{}", "not valid JSON")])
def test_malformed_json_is_one_line(text, says):
    with pytest.raises(EdgeqError, match=says) as e:
        parse_json(text, "cfg.json")
    assert str(e.value).startswith("cfg.json: ") and "\n" not in str(e.value)


def test_read_json_refuses_oversized_and_missing(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(MAX_BYTES + 1)
    with pytest.raises(EdgeqError, match="more than"):
        read_json(big)
    with pytest.raises(EdgeqError, match="cannot read"):
        read_json(tmp_path / "none.json")
    (tmp_path / "ok.json").write_text('{"a": [1, 2]}')
    assert read_json(tmp_path / "ok.json") == {"a": [1, 2]}
