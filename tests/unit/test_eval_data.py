"""Loading judged data: column detection, HTML cleaning, TREC files, clear errors."""

import pytest

from sidecar.errors import InvalidRequest
from sidecar.evaluation.data import load_csv, load_trec


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_crowdflower_columns_are_detected(tmp_path) -> None:
    f = write(
        tmp_path / "cf.csv",
        "id,query,product_title,product_description,median_relevance\n"
        '1,led lights,LED String,"<b>Warm</b> &amp; bright",4\n'
        "2,led lights,Lamp,,2\n3,tent,Tent 4p,,3\n",
    )
    data = load_csv(f)
    assert data.columns["query"] == "query" and data.columns["text"] == "product_description"
    assert [q.text for q in data.queries] == ["led lights", "tent"]
    product = next(p for p in data.products.values() if p.title == "LED String")
    assert product.text == "Warm & bright"
    assert sorted(data.queries[0].labels.values()) == [2.0, 4.0]


def test_homedepot_columns_are_detected(tmp_path) -> None:
    f = write(
        tmp_path / "hd.csv",
        "id,product_uid,product_title,search_term,relevance\n"
        "1,100,Mower,gas mower,3\n2,101,Paver,gas mower,1.33\n3,100,Mower,mower,2.67\n",
    )
    data = load_csv(f)
    assert data.columns["id"] == "product_uid" and data.columns["text"] is None
    assert set(data.products) == {"100", "101"} and data.label_range == (1.33, 3.0)


def test_missing_column_names_the_option(tmp_path) -> None:
    f = write(tmp_path / "x.csv", "question,item,score\nq,i,1\n")
    with pytest.raises(InvalidRequest, match="--query-column"):
        load_csv(f)
    data = load_csv(f, query="question", title="item", label="score")
    assert data.queries[0].text == "q"


def test_bad_label_names_the_line(tmp_path) -> None:
    f = write(tmp_path / "x.csv", "query,title,label\nq,i,high\n")
    with pytest.raises(InvalidRequest, match=":2: label 'high'"):
        load_csv(f)


def test_trec_style(tmp_path) -> None:
    queries = write(tmp_path / "q.tsv", "q1\tboots\tshort\nq2\tunjudged\n")
    corpus = write(
        tmp_path / "c.jsonl",
        '{"_id": "d1", "title": "Boots", "text": "dry"}\n'
        '{"_id": "d2", "title": "Socks", "text": ""}\n',
    )
    qrels = write(tmp_path / "r.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\n")
    data = load_trec(queries, corpus, qrels)
    assert len(data.queries) == 1 and data.queries[0].labels == {"d1": 2.0, "d2": 0.0}
    assert data.queries[0].query_type == "short"
