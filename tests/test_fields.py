"""The FIELD grammar: what each spec parses to, and every spec refused in one line with nothing written."""

from __future__ import annotations

import json
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from petrock.errors import InvalidName
from petrock.fields import (
    DEFAULT_FIELDS,
    FieldSpec,
    app_fields,
    label_field,
    parse_fields,
    python_literal,
    python_tuple,
    referenced_items,
    summarized_field,
    title_field,
)

from .support import petrock_in, refused_without_a_trace

CUSTOMERS = parse_fields(["name:str", "email:email"], feature="customers", features={})
KNOWN = {"customers": CUSTOMERS}


def parse(*specs: str) -> tuple[FieldSpec, ...]:
    return parse_fields(specs, feature="orders", features=KNOWN)


def test_no_fields_means_the_seeds_title_and_content() -> None:
    assert [field.spec for field in parse()] == list(DEFAULT_FIELDS)
    title, content = parse()
    assert (title.annotation, title.input, content.annotation, content.input) == ("Line", "text", "Text", "textarea")


def test_every_type_parses_with_its_argument_and_optional() -> None:
    fields = parse(
        "customer:ref:customers",
        "total:decimal",
        "paid:bool",
        "due:date:optional",
        "status:choice:draft,paid,shipped",
        "note:text:optional",
        "qty:int",
        "rate:float",
        "at:datetime",
        "contact:email",
        "site:url:optional",
        "label:str",
    )
    by_name = {field.name: field for field in fields}
    assert by_name["customer"].ref == "customers" and by_name["customer"].ref_label == "name"
    assert by_name["status"].choices == ("draft", "paid", "shipped")
    assert by_name["status"].annotation == "StatusChoice"
    due = by_name["due"]
    assert due.optional and (due.annotation, due.default) == ("date | None", " = None")
    assert by_name["paid"].default == " = False" and not by_name["paid"].required
    inputs = {field.name: field.input for field in fields}
    assert inputs == {
        "customer": "select", "total": "number", "paid": "checkbox", "due": "date", "status": "select",
        "note": "textarea", "qty": "number", "rate": "number", "at": "datetime-local", "contact": "email",
        "site": "url", "label": "text",
    }  # fmt: skip
    assert (by_name["total"].step, by_name["qty"].step, by_name["rate"].step) == ("any", "1", "any")
    assert [field.name for field in fields if field.filterable] == ["customer", "paid", "status"]
    # the spec round-trips: the manifest records it and upgrade parses it again
    assert parse(*(field.spec for field in fields)) == fields


def test_a_feature_without_a_string_field_is_named_by_its_id() -> None:
    amounts = parse_fields(["amount:decimal"], feature="amounts", features={})
    tagged = parse_fields(["amount:ref:amounts"], feature="tagged", features={"amounts": amounts})
    assert tagged[0].ref_label == "id"


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("total:money", "did you mean `total:decimal`"),
        ("qty:integer", "did you mean `qty:int`"),
        ("total", "has no type"),
        ("Total:int", "bad name"),
        ("2nd:int", "bad name"),
        ("class:str", "Python keyword"),
        ("id:str", "used by the generated code"),
        ("created_at:datetime", "used by the generated code"),
        ("summary:text", "used by the generated code"),
        ("sort:str", "used by the generated code"),
        ("model_name:str", "used by the generated code"),
        ("date:date", "used by the generated code"),
        ("status:choice", "needs an argument"),
        ("status:choice:", "needs an argument"),
        ("status:choice:a,,b", "empty choice"),
        ("status:choice:a,a", "twice"),
        ("status:choice:a b", "cannot use"),
        ("buyer:ref", "needs an argument"),
        ("buyer:ref:suppliers", "not a feature of this app"),
        ("buyer:ref:customer", "did you mean `ref:customers`"),
        ("buyer:ref:orders", "the feature being added"),
        ("due:date:required", "unknown modifier"),
        ("due:date:optional:optional", "gives optional twice"),
        ("price:decimal:min=cheap", "not a decimal"),
        ("price:decimal:min=5:max=1", "min= above max="),
        ("price:decimal:min=1:min=2", "twice"),
        ("price:decimal:min=", "empty min="),
        ("paid:bool:min=1", "takes no min="),
        ("site:url:max=10", "takes no max="),
        ("title:str:min=x", "not a length"),
        ("title:str:max=0", "at least 1"),
        ("qty:int:default=many", "not an integer"),
        ("qty:int:min=1e3", "not an integer"),
        ("contact:email:min=1", "an email field takes no min="),
        # rules no value can keep: beyond what the type holds
        ("blurb:str:min=300", "a str holds at most 200 characters"),
        ("blurb:str:max=300", "use `text` for longer"),
        ("blurb:text:min=100001", "at most 100000 characters"),
        ("blurb:str:default=" + "x" * 201, "longer than a str holds"),
        ("price:decimal:min=1e999", "beyond what a decimal field holds"),
        ("price:decimal:max=-1e30", "at most 30 digits"),
        ("price:decimal:default=1e40", "beyond what a decimal field holds"),
        ("rate:float:min=1e999", "beyond what a float field holds"),
        ("qty:int:min=9223372036854775808", "64-bit"),
        ("qty:int:min=1:default=0", "outside min= and max="),
        ("paid:bool:default=yes", "default=true"),
        ("status:choice:a,b:default=c", "not one of its choices"),
        ("customer:ref:customers:default=x", "takes no default="),
        ("title:str:label=<b>", "label petrock cannot use"),
        ("title:str:colour=red", "unknown modifier"),
        ("paid:bool:unique", "a bool field cannot be unique"),
        ("note:text:unique", "a text field cannot be unique"),
        ("status:choice:a,b:unique", "a choice field cannot be unique"),
        ("code:str:unique:unique", "gives unique twice"),
        ("code:str:unique:default=x", "unique and has a default="),
        ("code:str:default=x:unique", "unique and has a default="),
        ("qty:int:unique:min=1:max=5", "leave too few values"),
        ("title:str:lable=Foo", "did you mean `label=`?"),
        ("title:str:uniqe", "did you mean `unique`?"),
        ("price:decimal:min=123456789012345678901234567890.5", "at most 30 digits"),
        ("rate:float:unique:min=0:max=0", "leave one value"),
        ("price:decimal:unique:min=1:max=1.0", "leave one value"),
    ],
)
def test_bad_specs_are_refused_with_a_fix(spec: str, needle: str) -> None:
    with pytest.raises(InvalidName) as refused:
        parse(spec)
    assert needle in str(refused.value)
    assert refused.value.fix  # every refusal says how to fix it


def test_rules_go_into_the_model_the_form_and_the_samples() -> None:
    price, qty, isbn, title, published, in_stock = parse(
        "price:decimal:optional:min=0",
        "qty:int:min=1:max=10:default=3",
        "isbn:str:label=ISBN",
        "title:str:min=2:max=80",
        "published:date:min=2000-01-01",
        "in_stock:bool:default=true",
    )
    assert price.annotation == "Annotated[Amount, Field(ge=Decimal(0))] | None"
    assert (price.input_rules, price.hint, price.rule_breaking) == (' min="0"', "0 or more", ["-1"])
    assert (qty.annotation, qty.default, qty.required) == ("Annotated[Integer, Field(ge=1, le=10)]", " = 3", False)
    assert (qty.sample, qty.rule_breaking, qty.stored_default) == (10, [0, 11], 3)  # the sample kept within max
    assert (isbn.label, isbn.annotation, isbn.input_rules) == ("ISBN", "Line", ' maxlength="200"')
    assert title.annotation == "Annotated[Line, Field(min_length=2, max_length=80)]"
    assert (title.input_rules, title.hint) == (' minlength="2" maxlength="80"', "2 to 80 characters")
    # JSON Schema cannot bound a date: the example the API's description shows keeps the bound
    assert published.annotation == 'Annotated[date, Field(ge=date(2000, 1, 1), examples=["2025-01-31"])]'
    assert (published.hint, published.rule_breaking) == ("from 2000-01-01", ["1999-12-31"])
    assert (in_stock.default, in_stock.form_default, in_stock.stored_default) == (" = True", True, True)
    # the rules round-trip through the manifest
    assert parse(*(field.spec for field in (price, qty, isbn, title, published, in_stock))) == (
        price,
        qty,
        isbn,
        title,
        published,
        in_stock,
    )


def test_unique_is_recorded_and_each_unique_field_has_other_valid_values_for_the_tests() -> None:
    fields = parse(
        "isbn:str:unique:label=ISBN",
        "contact:email:unique",
        "site:url:optional:unique",
        "qty:int:unique:min=0:max=10",
        "price:decimal:unique:min=0:max=1",
        "rate:float:unique",
        "day:date:unique:max=2025-01-31",
        "at:datetime:unique",
        "code:str:unique:max=3",
    )
    assert [field.spec for field in fields][:3] == [
        "isbn:str:unique:label=ISBN",
        "contact:email:unique",
        "site:url:optional:unique",
    ]
    assert parse(*(field.spec for field in fields)) == fields  # round-trips through the manifest
    for field in fields:
        others = field.other_samples
        assert len(others) == 8 and field.sample not in others, field.spec
        assert len({str(value).casefold() for value in others}) == 8, field.spec
    by_name = {field.name: field for field in fields}
    assert by_name["qty"].sample == 10 and all(0 <= value < 10 for value in by_name["qty"].other_samples)
    assert all(Decimal(value) <= 1 for value in by_name["price"].other_samples)
    assert all(value < "2025-01-31" for value in by_name["day"].other_samples)
    assert {len(value) for value in by_name["code"].other_samples} == {3}  # within max=3
    assert not parse("title:str")[0].rules.unique


def test_labels_know_common_acronyms() -> None:
    labels = [
        field.label for field in parse("isbn:str", "vat_rate:float", "api_key:str", "item_url:url", "in_stock:bool")
    ]
    assert labels == ["ISBN", "VAT rate", "API key", "Item URL", "In stock"]


def test_the_title_field_is_chosen_by_name_else_the_first_str() -> None:
    books = parse_fields(["isbn:str", "title:str", "price:decimal"], feature="books", features={})
    assert label_field(books) == "title"
    assert label_field(parse_fields(["sku:str", "label:str"], feature="items", features={})) == "label"
    assert label_field(parse_fields(["sku:str", "code:str"], feature="items", features={})) == "sku"
    assert label_field(books, "isbn") == "isbn"
    assert title_field(books, "isbn") == "isbn"
    with pytest.raises(InvalidName, match="does not name a str field"):
        title_field(books, "price")
    stocked = parse_fields(["book:ref:books"], feature="stock", features={"books": books}, titles={"books": "isbn"})
    assert stocked[0].ref_label == "isbn"


def test_a_field_given_twice_is_refused() -> None:
    with pytest.raises(InvalidName, match="given twice"):
        parse("total:int", "total:decimal")


def test_the_summarized_field_is_the_first_text_unless_chosen() -> None:
    fields = parse("title:str", "body:text", "notes:text")
    assert summarized_field(fields, None) == "body"
    assert summarized_field(fields, "notes") == "notes"
    assert summarized_field(fields, None, worker=False) == ""
    assert summarized_field(parse("qty:int"), None) == ""
    with pytest.raises(InvalidName, match="does not name a text field"):
        summarized_field(fields, "title")
    with pytest.raises(InvalidName, match="contradict"):
        summarized_field(fields, "body", worker=False)


def test_app_fields_reads_the_manifest_and_orders_what_tests_must_create_first() -> None:
    entries = {
        "lines": {"fields": ["order:ref:orders", "amount:decimal"]},
        "orders": {"fields": ["customer:ref:customers", "total:decimal"]},
        "customers": {"fields": ["name:str"]},
        "posts": {},  # made before fields existed: the default fields
    }
    known = app_fields(entries)
    assert [field.spec for field in known["posts"]] == list(DEFAULT_FIELDS)
    assert [name for name, _ in referenced_items(known["lines"], known)] == ["customers", "orders"]
    (_, orders_payload) = referenced_items(known["lines"], known)[1]
    assert orders_payload == {"id": "orders-1", "customer": "customers-1", "total": "12.50"}


def test_python_literals_look_like_the_generated_code() -> None:
    assert python_literal({"a": True, "b": None, "c": "x", "d": 2.5}) == '{"a": True, "b": None, "c": "x", "d": 2.5}'
    assert (python_tuple(["a"]), python_tuple(["a", "b"])) == ('("a",)', '("a", "b")')


# --- through the CLI: one line, nothing written ---


def test_the_generated_tests_own_values_keep_the_length_and_value_rules() -> None:
    isbn, blurb, price, cheap, published = parse(
        "isbn:str:min=10:max=17",
        "blurb:text:min=20:max=30",
        "price:decimal:min=0:max=1000",
        "cheap:decimal:max=-5",
        "published:date:max=1999-12-31",
    )
    for text in ("", "Changed", "<script>alert(1)</script>", "The first sentence. " * 5):
        assert 10 <= len(isbn.fit(text)) <= 17 and 20 <= len(blurb.fit(text)) <= 30
        assert isbn.fit(text) == isbn.fit(text).strip()  # what the Line type keeps
    assert isbn.fit("Changed") == "Changed And more."
    numbered = blurb.fit_numbered("Content number {n}.")
    assert "{n}" in numbered and 20 <= len(numbered.format(n=7)) <= 30
    assert price.exact_decimals == [(12.5, "12.5"), ("0.10", "0.10")]  # 1234567890.123456789 is above max=1000
    assert cheap.exact_decimals == [("-5", "-5")]  # none fit: the sample, kept within the bound
    assert published.sample == "1999-12-31" and 'examples=["1999-12-31"]' in published.annotation


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("orders", "total:money"), "did you mean `total:decimal`"),
        (("orders", "blurb:str:min=300"), "a str holds at most 200 characters"),
        (("orders", "id:str"), "used by the generated code"),
        (("orders", "buyer:ref:customers"), "not a feature of this app"),
        (("orders", "status:choice:"), "needs an argument"),
        (("orders", "due:date:maybe"), "unknown modifier"),
        (("orders", "a:int", "a:str"), "given twice"),
        (("orders", "qty:int", "--summarize", "qty"), "does not name a text field"),
        (("orders", "total:decimal:min=-"), "not a decimal"),
        (("orders", "ref_no:str", "--title", "total"), "does not name a str field"),
    ],
)
def test_the_cli_refuses_bad_fields_without_a_trace(blog_app: Path, args: tuple[str, ...], needle: str) -> None:
    message = refused_without_a_trace(blog_app, "feature", "add", *args)
    assert needle in message


def test_title_and_rules_are_recorded_and_rendered(blog_app: Path) -> None:
    fields = ("isbn:str:unique:label=ISBN", "name:str", "price:decimal:optional:min=0")
    result = petrock_in(blog_app, "feature", "add", "books", *fields, "--title", "isbn", "--no-worker")
    assert result.returncode == 0, result.stderr
    entry = tomllib.loads((blog_app / ".petrock.toml").read_text())["features"]["books"]
    assert (entry["fields"], entry["title"]) == (list(fields), "isbn")
    assert 'label="isbn"' in (blog_app / "src/blog/books/routes.py").read_text()  # the link text, not name
    commands = (blog_app / "src/blog/books/commands.py").read_text()
    assert "price: Annotated[Amount, Field(ge=Decimal(0))] | None = None" in commands
    form = (blog_app / "src/blog/books/templates/form.html").read_text()
    assert '<label for="isbn">ISBN</label>' in form and 'step="any" min="0"' in form
    state = (blog_app / "src/blog/books/state.py").read_text()
    assert 'require_unique(self.items, "isbn", values["isbn"], id)' in state and '"name", values' not in state
    assert "except DuplicateValue as exc:" in (blog_app / "src/blog/books/routes.py").read_text()


def test_the_manifest_records_fields_and_the_summarized_field(blog_app: Path) -> None:
    result = petrock_in(blog_app, "feature", "add", "notes", "body:text", "pinned:bool", "--no-worker", "--json")
    assert result.returncode == 0, result.stderr
    entry = tomllib.loads((blog_app / ".petrock.toml").read_text())["features"]["notes"]
    assert (entry["fields"], entry["summarize"]) == (["body:text", "pinned:bool"], "")
    assert not (blog_app / "src/blog/notes/worker.py").exists()
    register = (blog_app / "src/blog/notes/register.py").read_text()
    assert "SummaryWorker" not in register and "# petrock:components" in register

    listed = petrock_in(blog_app, "feature", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (notes,) = json.loads(listed.stdout)["features"]
    assert notes["fields"] == ["body:text", "pinned:bool"] and notes["workers"] == []
    assert "pinned:bool" in petrock_in(blog_app, "feature", "list").stdout
