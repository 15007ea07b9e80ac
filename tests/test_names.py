"""Name validation and the names derived from a feature name."""

from __future__ import annotations

import pytest

from petrock.errors import InvalidName
from petrock.names import (
    FeatureNames,
    component_identifier,
    singular,
    suggest,
    validate_feature_name,
    validate_project_name,
)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("Posts", "not a valid"),
        ("my-posts", "my_posts"),
        ("2posts", "not a valid"),
        ("../x", "not a valid"),
        ("café", "not a valid"),
        ("class", "keyword"),
        ("match", "keyword"),
        ("json", "standard-library"),
        ("typing", "standard-library"),
        ("starlette", "depends on"),
        ("petrock", "reserves"),
        ("a" * 51, "longer than"),
    ],
)
def test_bad_project_names_are_refused_with_a_reason(name: str, message: str) -> None:
    with pytest.raises(InvalidName, match=message):
        validate_project_name(name)


@pytest.mark.parametrize("name", ["core", "features", "cli", "tests", "blog", "http", "json", "pydantic"])
def test_feature_names_that_would_shadow_modules_are_refused(name: str) -> None:
    with pytest.raises(InvalidName):
        validate_feature_name(name, app="blog")


@pytest.mark.parametrize("name", ["posts", "order_items", "news", "blog2", "x"])
def test_good_names_pass(name: str) -> None:
    assert validate_feature_name(name, app="blog") == name


def test_suggestions_turn_near_misses_into_identifiers() -> None:
    assert suggest("my-posts") == "my_posts"
    assert suggest("My Posts") == "my_posts"
    assert suggest("2fast") == "fast"
    assert suggest("---") is None


def test_suggestions_split_camel_case_into_words() -> None:
    assert suggest("PublishDraft") == "publish_draft"
    assert suggest("orderItems") == "order_items"
    assert suggest("HTTPServer") == "http_server"
    assert suggest("Posts") == "posts"


@pytest.mark.parametrize(
    ("plural", "one"),
    [("posts", "post"), ("categories", "category"), ("boxes", "box"), ("churches", "church"), ("news", "news"),
     ("people", "person"), ("status", "status"), ("addresses", "address")],
)  # fmt: skip
def test_singular(plural: str, one: str) -> None:
    assert singular(plural) == one


def test_feature_names_derive_class_and_path_names() -> None:
    names = FeatureNames.of("order_items")
    assert (names.Item, names.Items, names.item, names.kebab) == (
        "OrderItem",
        "OrderItems",
        "order_item",
        "order-items",
    )
    assert FeatureNames.of("news").Item == "NewsItem"
    assert FeatureNames.of("posts").item_title == "Post"


def test_component_names_accept_dashes() -> None:
    assert component_identifier("publish-draft") == "publish_draft"
    with pytest.raises(InvalidName):
        component_identifier("Publish")


def test_sentences_use_the_right_article() -> None:
    assert FeatureNames.of("order_items").a_item == "an order item"
    assert FeatureNames.of("posts").a_item == "a post"


@pytest.mark.parametrize("name", ["list", "remove", "add", "help"])
def test_feature_subcommand_names_are_not_feature_names(name: str) -> None:
    with pytest.raises(InvalidName, match="subcommand"):
        validate_feature_name(name, app="blog")


def test_a_keyword_gets_a_usable_suggestion() -> None:
    with pytest.raises(InvalidName, match="try `my_class`"):
        validate_feature_name("class", app="blog")
