"""The posts pages: a list, a detail page, and forms that send the same commands as ``POST /commands``.

A form that does not validate is shown again, with the errors beside the
fields and the input kept, and nothing is dispatched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from ..core import App, CommandRejected, NotFound
from ..core.forms import field_errors
from ..core.http import RequestTooLarge, form_errors, read_form
from ..core.listing import PAGING, BadPage, Pager, read_paging, unknown_parameter, without_empty
from ..core.navigation import referring_items
from ..core.pages import redirect_with_flash
from ..core.references import StillReferenced
from .commands import CreatePost, DeletePost, UpdatePost
from .queries import ListPosts

URL = "/posts"
TEMPLATES = Path(__file__).parent / "templates"
FORM_FIELDS = ("title", "content")
FORM_METHODS = ("GET", "POST")
# What the HTML templates need to know about this feature.
FEATURE = {"name": "posts", "title": "Posts", "item_title": "Post", "url": URL}


class PostsPages:
    """The posts pages' handlers: they use ``app.query`` and ``app.dispatch``, like any client."""

    def __init__(self, app: App) -> None:
        self.app = app

    def register(self) -> None:
        """Add the routes (``new`` before ``{item_id}``, so it is not read as an id) and the index link."""
        app = self.app
        app.add_route(URL, self.list_page, name="posts:list")
        app.add_route(f"{URL}/new", self.new_page, methods=FORM_METHODS, name="posts:new")
        app.add_route(URL + "/{item_id}", self.detail_page, name="posts:detail")
        app.add_route(URL + "/{item_id}/edit", self.edit_page, methods=FORM_METHODS, name="posts:edit")
        app.add_route(URL + "/{item_id}/delete", self.delete, methods=("POST",), name="posts:delete")
        app.add_link("Posts", URL, feature="posts", label="title", item_title="Post")

    async def list_page(self, request: Request) -> Response:
        params = dict(request.query_params)
        if (clean := without_empty(URL, params)) is not None:  # a form sends empty filters too
            return RedirectResponse(clean, status_code=303)
        unknown = unknown_parameter(params, ListPosts.model_fields, "/queries/posts/list")
        if unknown is not None:  # offset and limit too: the page sets them from page and per_page
            return self._error(request, 400, "Bad request", unknown)
        try:
            page, per_page = read_paging(params)
            filters = {name: value for name, value in params.items() if name not in PAGING}
            paging = {"offset": (page - 1) * per_page, "limit": per_page}
            listing = self.app.query("posts/list", {**filters, **paging})
        except BadPage as exc:
            return self._error(request, 400, "Bad request", str(exc))
        except ValidationError as exc:  # a filter's value or the sort: each named with what it takes
            reasons = "; ".join(f"{'.'.join(error['loc'])}: {error['msg']}" for error in field_errors(exc))
            return self._error(request, 400, "Bad request", f"This list cannot show that. {reasons}.")
        pager = Pager.of(URL, listing, params, page, per_page)
        return self._render(request, "list.html", listing=listing, filters=filters, pager=pager)

    async def detail_page(self, request: Request) -> Response:
        item = self._find(request.path_params["item_id"])
        if item is None:
            return self._not_found(request)
        return self._render(request, "detail.html", item=item)

    async def new_page(self, request: Request) -> Response:
        if request.method == "GET":
            return self._form(request, action=f"{URL}/new", values={})
        try:
            values = await _read_fields(request)
        except RequestTooLarge:
            return PlainTextResponse("the form is too large", status_code=413)
        try:
            command = CreatePost.model_validate(values)
        except ValidationError as exc:
            return self._form(request, action=f"{URL}/new", values=values, errors=form_errors(exc), status_code=400)
        return self._dispatch_then_show(request, command, "Post created.", action=f"{URL}/new", values=values)

    async def edit_page(self, request: Request) -> Response:
        item_id = request.path_params["item_id"]
        item = self._find(item_id)
        if item is None:
            return self._not_found(request)
        action = f"{URL}/{item_id}/edit"
        if request.method == "GET":
            return self._form(request, action=action, values=item, item=item)
        try:
            values = await _read_fields(request)
        except RequestTooLarge:
            return PlainTextResponse("the form is too large", status_code=413)
        try:
            command = UpdatePost.model_validate({**values, "id": item_id})
        except ValidationError as exc:
            errors = form_errors(exc)
            return self._form(request, action=action, values=values, errors=errors, item=item, status_code=400)
        return self._dispatch_then_show(request, command, "Post saved.", action=action, values=values, item=item)

    async def delete(self, request: Request) -> Response:
        item = self._find(request.path_params["item_id"])
        if item is None:
            return self._not_found(request)
        try:
            self.app.dispatch(DeletePost(id=item["id"]))
        except StillReferenced as exc:
            message = f"{self._name(item)} is still used by these; delete them or point them elsewhere first:"
            items, back = referring_items(self.app, exc), f"{URL}/{item['id']}"
            return self._error(request, exc.status_code, "Not deleted", message, items=items, back_url=back)
        except CommandRejected as exc:
            return self._error(request, exc.status_code, "Not deleted", str(exc))
        return redirect_with_flash(URL, "Post deleted.")

    # --- helpers ---

    def _find(self, item_id: str) -> dict[str, Any] | None:
        try:
            return self.app.query("posts/get", {"id": item_id})
        except (NotFound, ValidationError):
            return None

    def _dispatch_then_show(
        self, request: Request, command: CreatePost | UpdatePost, flash: str, **form: Any
    ) -> Response:
        try:
            self.app.dispatch(command)
        except CommandRejected as exc:
            return self._form(request, errors={"form": str(exc)}, status_code=exc.status_code, **form)
        return redirect_with_flash(f"{URL}/{command.id}", flash)

    def _form(
        self,
        request: Request,
        *,
        action: str,
        values: dict[str, Any],
        errors: dict[str, str] | None = None,
        item: dict[str, Any] | None = None,
        status_code: int = 200,
    ) -> Response:
        return self._render(
            request, "form.html", status_code, action=action, values=values, errors=errors or {}, item=item
        )

    def _render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        return self.app.pages.render(
            f"posts/{template}",
            status_code,
            request=request,
            feature=FEATURE,
            **context,
        )

    def _not_found(self, request: Request) -> Response:
        return self._error(request, 404, "Not found", "There is no post with that id.")

    def _name(self, item: dict[str, Any]) -> str:
        """What the pages call the post: its title field."""
        return str(item["title"])

    def _error(
        self,
        request: Request,
        status_code: int,
        heading: str,
        message: str,
        *,
        items: list[tuple[str, str]] | None = None,
        back_url: str = URL,
    ) -> Response:
        return self.app.pages.render(
            "core/error.html",
            status_code,
            request=request,
            heading=heading,
            message=message,
            items=items or [],
            back_url=back_url,
            feature=FEATURE,
        )


async def _read_fields(request: Request) -> dict[str, Any]:
    """The form's fields that the commands take; an empty input is left out (a submit button's name, too)."""
    form = await read_form(request)
    values: dict[str, Any] = {name: form[name] for name in FORM_FIELDS if form.get(name, "").strip()}
    return values
