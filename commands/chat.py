"""Asking models from the terminal: list endpoints, ask several at once, serve the embedded model."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from rich.live import Live
from rich.table import Column, Table

from commands.common import (
    COUNT_RANGE,
    ID_RANGE,
    TEMPERATURE_HELP,
    TEMPERATURE_RANGE,
    err,
    fail,
    heading,
    load_endpoints_or_fail,
    open_db_or_fail,
    out,
    plain,
)
from lib.present import cli_hint
from lib.safety import json_text
from lib.vocab import Label, Status

app = typer.Typer()


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List every endpoint with its state (ready, key missing, local server down)."""
    from lib.providers.endpoints import endpoint_state

    rows = []
    for endpoint in load_endpoints_or_fail().values():
        state = endpoint_state(endpoint)
        rows.append(
            {
                "id": endpoint.id,
                "name": endpoint.name,
                "kind": endpoint.kind,
                "model": endpoint.model,
                "key_env": endpoint.key_env,
                "ready": state.ready,
                "status": state.status,
                "detail": state.detail,
            }
        )
    if as_json:
        print(json_text(rows, indent=2))
        return
    widest = max((len(r["id"]) for r in rows), default=2)
    table = Table(  # ids are typed: never cut; the rest wraps, never truncated
        Column("id", no_wrap=True, min_width=widest),
        Column("name", overflow="fold"),
        "kind",
        Column("status", overflow="fold"),
        Column("detail", overflow="fold", ratio=2),
    )
    for row in rows:
        colour = "green" if row["ready"] else "yellow"
        table.add_row(
            plain(row["id"]), plain(row["name"]), row["kind"], plain(row["status"], colour), plain(row["detail"])
        )
    out.print(table)


def _undecoded_argument(what: str, text: str) -> str | None:
    """A warning when a command-line argument held bytes that are not UTF-8 (Python keeps them as
    lone surrogates, U+DC80-U+DCFF, which are then replaced by U+FFFD), else None."""
    undecoded = sum(1 for char in text if "\udc80" <= char <= "\udcff")
    return f"{what}: {undecoded:,} byte(s) not UTF-8 were replaced by U+FFFD" if undecoded else None


@app.command()
def ask(
    prompt: Annotated[str, typer.Argument(help="The prompt; '-' reads it from stdin.")],
    model: Annotated[list[str], typer.Option("--model", "-m", help="Endpoint id (repeat for several).")] = None,
    system: Annotated[
        Optional[str],
        typer.Option(help="System prompt (with --conversation, default: the conversation's; '' for none)."),
    ] = None,
    conversation: Annotated[Optional[int], typer.Option(help="Continue this conversation id.", **ID_RANGE)] = None,
    temperature: Annotated[Optional[float], typer.Option(help=TEMPERATURE_HELP, **TEMPERATURE_RANGE)] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Most output tokens per answer.", **COUNT_RANGE)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Ask one prompt of several models at once, stream the answers and store them."""
    from lib.files import decode_lenient
    from lib.providers.chat import Column, PromptError, validate_prompt
    from lib.providers.endpoints import UnknownEndpoint, key_is_set, resolve, where_keys_go
    from lib.safety import clean_text

    if prompt == "-":  # invalid UTF-8 becomes U+FFFD, with a warning naming the line and byte
        prompt, warning = decode_lenient(sys.stdin.buffer.read(), "<stdin>")
        prompt = clean_text(prompt)  # a NUL too, as before
    else:
        warning = _undecoded_argument("the prompt", prompt)
    for said in (_undecoded_argument("--system", system or ""), warning):
        if said:
            err.print(f"warning: {said}", highlight=False)
    try:
        prompt = validate_prompt(prompt)
    except PromptError as exc:
        fail(str(exc))
    if not model:
        fail(f"name at least one --model (see {cli_hint('models')})")
    try:
        endpoints = resolve(load_endpoints_or_fail(), list(dict.fromkeys(model)))
    except UnknownEndpoint as exc:
        fail(str(exc))
    for endpoint in endpoints:
        if not key_is_set(endpoint):
            fail(f"model '{endpoint.id}' needs an API key: {where_keys_go(endpoint.key_env)}")
    open_db_or_fail()
    if system is None and conversation is not None:  # a follow-up keeps the conversation's system prompt
        from lib.conversations import load

        opened = load(conversation)
        system = opened.system_prompt if opened is not None else None
    columns = [Column(e.id, e) for e in endpoints]
    overrides = {"temperature": temperature, "max_tokens": max_tokens}
    _ask_and_report(prompt, columns, system, conversation, overrides, as_json)


def _ask_and_report(
    prompt: str,
    columns: list,
    system: str | None,
    conversation: int | None,
    overrides: dict,
    as_json: bool,
    exchange_id: int | None = None,
) -> None:
    """Ask `columns` (a new turn of `conversation`, or a retry of `exchange_id`), show the answers
    as they stream (each whole under its model's name when piped), then one summary line each and
    how to continue and vote; or one JSON object."""
    from lib.providers.chat import PromptError
    from lib.providers.chat import ask as do_ask

    live_texts = {c.slot: plain("…") for c in columns}

    def render() -> Table:
        table = Table(*[plain(c.endpoint.name).plain for c in columns], expand=True, show_lines=False)
        table.add_row(*[live_texts[c.slot] for c in columns])
        return table

    started: list[int] = []  # the conversation and exchange ids, once the turn is stored

    def on_start(conversation_id: int, started_exchange: int) -> None:
        started.extend((conversation_id, started_exchange))

    try:
        if as_json or not out.is_terminal:  # piped: no live table, each answer whole under its model's name
            result = do_ask(
                prompt,
                columns,
                system=system,
                conversation_id=conversation,
                overrides=overrides,
                on_start=on_start,
                exchange_id=exchange_id,
            )
        else:
            with Live(render(), console=out, refresh_per_second=8, transient=False) as live:

                def update(target, state):
                    cell = plain(state.text or ("" if state.done else "…"))
                    if state.status != Status.OK:
                        cell.append_text(plain(f"\n[{state.status}] {state.error_message}", "red"))
                    elif state.done and state.note:
                        cell.append_text(plain(f"\n{state.note}", "yellow"))
                    live_texts[target.key] = cell
                    live.update(render())

                result = do_ask(
                    prompt,
                    columns,
                    system=system,
                    conversation_id=conversation,
                    overrides=overrides,
                    on_update=update,
                    on_start=on_start,
                    exchange_id=exchange_id,
                )
    except PromptError as exc:
        fail(str(exc))
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C, or a SIGTERM/SIGHUP that ends as it does
        if started and exchange_id is not None:  # a retry cut short: the turn shows what arrived
            err.print(
                f"turn {exchange_id} keeps what arrived, marked interrupted (ask it again with "
                f"{cli_hint(f'retry {exchange_id}')})",
                style="dim",
                markup=False,
            )
        elif started:  # what arrived is stored (an answer cut short as interrupted): say where
            err.print(
                f"conversation {started[0]} keeps what arrived (continue with --conversation {started[0]}, "
                f"or ask this turn again with {cli_hint(f'retry {started[1]}')})",
                style="dim",
                markup=False,
            )
        raise
    answers = {}
    for col in columns:
        o = result.outcomes[col.slot]
        answers[col.slot] = {
            "text": o.text,
            "reasoning": o.reasoning or None,
            "status": o.status,
            "error_kind": o.error_kind,
            "error": o.error_message,
            "finish_reason": o.finish_reason,
            "note": o.note,
            "ttft_ms": o.ttft_ms,
            "latency_ms": o.latency_ms,
            "input_tokens": o.input_tokens,
            "output_tokens": o.output_tokens,
            "cost_usd": o.cost_usd,
            "response_id": result.response_ids.get(col.slot),
        }
        verdict = result.labels.get(col.slot)  # the detector's label, as the Compare page shows it
        answers[col.slot] |= {
            "label": verdict.label if verdict else None,
            "label_confidence": verdict.confidence if verdict else None,
            "label_rule": verdict.rule if verdict else None,
        }
    if as_json:
        print(
            json_text(
                {
                    "conversation_id": result.conversation_id,
                    "exchange_id": result.exchange_id,
                    "models": answers,
                },
            )
        )
        return
    if not out.is_terminal:
        _print_answers(columns, answers)
    for slot, a in answers.items():
        ttft = f"{a['ttft_ms']:.0f} ms" if a["ttft_ms"] is not None else "–"
        label = ""
        if a["label"] and a["status"] == Status.OK:  # a failed or blocked one's label repeats its status
            guess = ", other language: a guess" if Label.is_guess(a["label_rule"]) else ""
            label = f", {a['label']} ({a['label_confidence']:.2f}{guess})"
        line = f"{slot}: {a['status']}{label}, first token {ttft}, total {a['latency_ms']:.0f} ms"
        line += f", {a['output_tokens'] or 0} tokens"
        if a["status"] != Status.OK and a["error"]:  # why, where the summary is read (stdout may be a file)
            line += f": {_one_line(a['error'])}"
        err.print(plain(line, "dim"))
    vote = ""
    sides, failed = _turn_outlook(result.conversation_id, result.exchange_id)
    if sides:
        vote = f"; vote with: vote {result.exchange_id} a|b|tie|both_bad, A is {sides[0]}, B is {sides[1]}"
    elif failed:  # this turn's, after a retry of another column too
        vote = f"; ask the failed model(s) again with: {cli_hint(f'retry {result.exchange_id}')}"
    err.print(
        plain(
            f"conversation {result.conversation_id}, exchange {result.exchange_id} "
            f"(continue with --conversation {result.conversation_id}{vote})",
            "dim",
        )
    )


@app.command()
def retry(
    exchange: Annotated[int, typer.Argument(help="The turn (exchange id) to ask again; ask prints it.", **ID_RANGE)],
    model: Annotated[
        list[str],
        typer.Option("--model", "-m", help="Endpoint id to ask again (repeat); default: the answers that failed."),
    ] = None,
    temperature: Annotated[Optional[float], typer.Option(help=TEMPERATURE_HELP, **TEMPERATURE_RANGE)] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Most output tokens per answer.", **COUNT_RANGE)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Ask the last turn of a conversation again, of the models whose answer failed (or those named),
    as the Compare page's Retry does: the new answer replaces the earlier one in the turn."""
    from lib.conversations import RetryError, retry_plan
    from lib.providers.chat import Column
    from lib.providers.endpoints import UnknownEndpoint, key_is_set, resolve, where_keys_go

    configured = load_endpoints_or_fail()
    open_db_or_fail()
    try:
        plan = retry_plan(exchange, list(dict.fromkeys(model or [])))
    except RetryError as exc:
        fail(str(exc))
    try:
        endpoints = resolve(configured, plan.slots)
    except UnknownEndpoint as exc:
        fail(
            f"model '{exc.endpoint_id}' is no longer configured, so it cannot be asked again (see {cli_hint('models')})"
        )
    for endpoint in endpoints:
        if not key_is_set(endpoint):
            fail(f"model '{endpoint.id}' needs an API key: {where_keys_go(endpoint.key_env)}")
    columns = [Column(e.id, e) for e in endpoints]
    overrides = {"temperature": temperature, "max_tokens": max_tokens}
    _ask_and_report(plan.prompt, columns, plan.system_prompt, plan.conversation_id, overrides, as_json, exchange)


def _turn_outlook(conversation_id: int, exchange_id: int) -> tuple[tuple[str, str] | None, bool]:
    """(the names of sides A and B when the turn can be voted on, else None; whether one of its
    answers failed), read from the whole turn: after a retry, its other columns count too."""
    from lib.conversations import load

    view = load(conversation_id)
    exchange = next((e for e in view.exchanges if e.id == exchange_id), None) if view else None
    if exchange is None:
        return None, False
    latest = exchange.latest
    shown = [latest[slot] for slot in view.slots if slot in latest]
    failed = any(r.failed for r in shown)
    if len(shown) != 2 or failed:
        return None, failed
    return (shown[0].display_name, shown[1].display_name), False


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _print_answers(columns, answers: dict[str, dict]) -> None:
    """Each answer under its model's name, its lines as the model wrote them (for a pipe or a file,
    where a table of columns would cut every answer into narrow wrapped pieces)."""
    for i, col in enumerate(columns):
        a = answers[col.slot]
        heading(plain(col.endpoint.name).plain, first=i == 0)
        if a["text"]:
            out.print(plain(a["text"]), highlight=False)
        if a["status"] != Status.OK:
            out.print(plain(f"[{a['status']}] {a['error'] or ''}".rstrip(), "red"), highlight=False)
        elif a["note"]:
            out.print(plain(a["note"], "yellow"), highlight=False)


@app.command("serve-local")
def serve_local(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.", min=1, max=65535)] = 8765,
) -> None:
    """Run the embedded model's OpenAI-compatible server in the foreground."""
    import subprocess

    from lib.providers import local_server

    try:
        command = local_server.server_command(port)
    except local_server.LocalModelUnavailable as exc:
        fail(str(exc))
    err.print(
        f"serving {local_server.MODEL_ALIAS} at http://127.0.0.1:{port}/v1 "
        f"(set PARALLAX_LOCAL_URL to share it); Ctrl-C stops it"
    )
    try:
        # guarded: a kill -9 of this command stops the server too
        raise typer.Exit(subprocess.call(local_server.guarded(command), env=local_server.server_env()))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
