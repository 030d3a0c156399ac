"""Building new messages: release decisions, releases, rollbacks and failures in Block Kit, and console text.

Each builder is a pure function of its arguments returning a :class:`SlackMessage` (blocks as
JSON-ready dicts, made from ``slack_sdk.models.blocks`` objects by ``slackbot.blocks``, with
text cut to Slack's limits there); :func:`format_console_request` is the plain-text form of an
approval request for a terminal when Slack is off. Sending is ``slackbot.client``'s job;
updating a message after a click is ``slackbot.updates``'.

Block ids embed the model name: a name of at most 100 characters (as :class:`ApprovalRequest`
requires) keeps them within Slack's 255. A name long enough (about 230 characters) to push one
past 255 makes a builder raise ``slack_sdk.errors.SlackObjectFormationError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    MarkdownTextObject,
    SectionBlock,
)

from core.orchestrator import FlowRunRef
from slackbot.blocks import (
    FIELD_TEXT_MAX,
    SECTION_TEXT_MAX,
    bullets,
    button,
    clip,
    code,
    confirm_dialog,
    context,
    escape,
    header,
    in_run,
    link,
    mention,
    mrkdwn,
    section,
    to_dicts,
)
from slackbot.payloads import (
    APPROVE_ACTION_ID,
    APPROVE_CANARY_ACTION_ID,
    REJECT_ACTION_ID,
    ROLLBACK_ACTION_ID,
    ActionValue,
    ApprovalRequest,
    RollbackValue,
    SlackMessage,
    approval_block_id,
)
from tasks.comparison import compare

# Batch names shown in a message; the rest are counted ("and 12 more").
_MAX_BATCHES_SHOWN = 20


def approval_request_message(req: ApprovalRequest) -> SlackMessage:
    """The approval request: header "<model> v<version> needs approval", candidate against
    production (accuracy, loss, macro F1 with changes; worst per-class recall change), the
    policy's reasons, data batches, links, and Approve (``approve``, primary) / Reject
    (``reject``, danger, with a confirmation dialog) buttons whose value is
    :class:`ActionValue` JSON. When there is a production version (``production_version``),
    an "Approve as canary" button (``approve_canary``, same value) sits between them: a canary
    needs a production version to be compared with. The actions block's id is
    :func:`approval_block_id`.
    """
    prefix = approval_block_id(req.model, req.version)
    title = f"{req.model} v{req.version} needs approval"
    blocks = _body_blocks(req, prefix, title, reasons_title="Why it needs a human")
    blocks.append(ActionsBlock(block_id=prefix, elements=_decision_buttons(req)))
    return SlackMessage(text=_fallback_text(title, req), blocks=to_dicts(blocks))


def promoted_message(req: ApprovalRequest) -> SlackMessage:
    """The candidate went to production without a human: metrics with their changes, reasons,
    batches and links, and, when there was a production version before, a Roll back button
    (see :func:`rollback_actions`) from ``req.version`` to ``req.production_version``."""
    title = f"{req.model} v{req.version} promoted to production"
    blocks = _body_blocks(req, f"promoted:{req.model}:{req.version}", title, reasons_title="Why")
    if req.production_version is not None:
        blocks.append(_rollback_block(req.model, req.version, req.production_version))
    return SlackMessage(text=_fallback_text(title, req), blocks=to_dicts(blocks))


def rollback_actions(model: str, from_version: int, to_version: int) -> dict[str, Any]:
    """An actions block (id ``rollback:<model>:<from_version>``, as a JSON-ready dict) with one
    Roll back button: ``rollback``, danger, confirmation dialog, value :class:`RollbackValue`."""
    return _rollback_block(model, from_version, to_version).to_dict()


def rejected_message(req: ApprovalRequest) -> SlackMessage:
    """The candidate was rejected: the reasons first, then metrics, batches and links. No buttons."""
    title = f"{req.model} v{req.version} rejected"
    blocks = _body_blocks(req, f"rejected:{req.model}:{req.version}", title, reasons_title="Why it was rejected")
    return SlackMessage(text=_fallback_text(title, req), blocks=to_dicts(blocks))


def rolled_back_message(
    model: str, from_version: int, to_version: int, actor: str, reason: str, run: FlowRunRef | None = None
) -> SlackMessage:
    """A rollback happened: from which version to which, by whom (``actor`` as in the audit
    log; ``slack:U…`` is shown as a mention), why, and in which flow run. No buttons."""
    title = f"{model} rolled back from v{from_version} to v{to_version}"
    blocks = [
        header(f"rolled_back:{model}:{from_version}:header", title),
        section(
            f"rolled_back:{model}:{from_version}:why",
            f"v{to_version} is in production again; v{from_version} is rolled back.\n"
            f"*By* {mention(actor)}{in_run(run)}\n*Why* {escape(reason)}",
        ),
    ]
    return SlackMessage(text=clip(f"{title} by {mention(actor)}: {reason}", SECTION_TEXT_MAX), blocks=to_dicts(blocks))


def released_message(
    model: str, version: int, actor: str, summary: str, previous_version: int | None, run: FlowRunRef | None = None
) -> SlackMessage:
    """A release started outside Slack (CLI, Prefect UI) is done: who (``actor`` as in the
    audit log), the summary, the flow run, and a Roll back button (to ``previous_version``)
    when there was a production version before."""
    title = f"{model} v{version} released to production"
    prefix = f"released:{model}:{version}"
    blocks: list[Block] = [
        header(f"{prefix}:header", title),
        section(f"{prefix}:why", f"*By* {mention(actor)}{in_run(run)}\n{escape(summary)}"),
    ]
    if previous_version is not None:
        blocks.append(_rollback_block(model, version, previous_version))
    return SlackMessage(text=clip(f"{title} by {mention(actor)}", SECTION_TEXT_MAX), blocks=to_dicts(blocks))


def validation_failed_message(
    model: str,
    batch: str,
    failed_expectations: Sequence[str],
    *,
    quarantined_at: str | None = None,
    report_url: str | None = None,
) -> SlackMessage:
    """A data batch broke its contract: the file, each failed expectation (one line each, e.g.
    ``FailedExpectation.describe()``; the list is cut to fit), where the file was quarantined
    and a link to the validation report. No buttons."""
    title = f"{model}: data validation failed for {batch}"
    prefix = f"validation:{model}"
    blocks: list[Block] = [
        header(f"{prefix}:header", title),
        section(
            f"{prefix}:failed",
            f"*{len(failed_expectations)} failed expectation(s)* in `{escape(batch)}`\n"
            + bullets(failed_expectations, SECTION_TEXT_MAX - 200),
        ),
    ]
    notes = []
    if quarantined_at:
        notes.append(f"Quarantined at `{escape(quarantined_at)}`; nothing was trained on it.")
    if report_url:
        notes.append(link(report_url, "Validation report"))
    if notes:
        blocks.append(context(f"{prefix}:where", "  ·  ".join(notes)))
    first = f": {failed_expectations[0]}" if failed_expectations else ""
    text = clip(f"{title} ({len(failed_expectations)} failed expectation(s){first})", SECTION_TEXT_MAX)
    return SlackMessage(text=text, blocks=to_dicts(blocks))


def run_failed_message(
    model: str,
    error: str,
    *,
    run_name: str | None = None,
    flow_run_url: str | None = None,
    step: str | None = None,
    flow: str = "run",
) -> SlackMessage:
    """A run failed: which ``flow`` ("nightly retrain", "release of v3") and run, at which
    ``step`` (task name; None when the flow's own code raised), the error (as a code block,
    cut to fit) and a link to the run."""
    title = f"{model}: {flow} {run_name} failed" if run_name else f"{model}: {flow} failed"
    if step:
        title += f" at step {step}"
    blocks: list[Block] = [
        header(f"run_failed:{model}:header", title),
        section(f"run_failed:{model}:error", code(error, SECTION_TEXT_MAX)),
    ]
    if flow_run_url:
        blocks.append(section(f"run_failed:{model}:links", link(flow_run_url, "Prefect flow run")))
    return SlackMessage(text=clip(f"{title}: {error}", SECTION_TEXT_MAX), blocks=to_dicts(blocks))


def format_console_request(req: ApprovalRequest, approve_command: str) -> str:
    """Plain text for a terminal when Slack is off: the same essentials as the Slack request
    and the exact ``approve_command`` (e.g. ``tfrelease approve 3 --model digits``), verbatim."""
    lines = [f"{req.model} v{req.version} needs approval (decision: {req.decision.outcome.value})", _comparison_line(req)]
    for row in _metric_rows(req):
        old = f"  production {row.production}" if row.production is not None else ""
        change = f"  ({row.change})" if row.change is not None else ""
        lines.append(f"  {row.label:<33} {row.candidate}{old}{change}")
    lines.append("Reasons:")
    lines += [f"  - {reason}" for reason in req.decision.reasons]
    if req.batches:
        lines.append(f"Trained on {len(req.batches)} batch(es): {', '.join(req.batches)}")
    if req.version_url:
        lines.append(f"Release dashboard: {req.version_url}")
    if req.flow_run_url:
        lines.append(f"Prefect flow run: {req.flow_run_url}")
    if req.report_url:
        lines.append(f"Validation report: {req.report_url}")
    lines.append(f"Approve with: {approve_command}")
    return "\n".join(lines)


# ---------------------------------------------------------------- helpers


class _Row(BaseModel):
    label: str
    candidate: str
    production: str | None = None
    change: str | None = None


def _metric_rows(req: ApprovalRequest) -> list[_Row]:
    """accuracy, loss, macro F1, then the worst per-class recall change (with production only);
    the accuracy and recall changes with their interval when the decision tested them."""
    comparison = compare(req.candidate, req.production)
    paired = req.decision.paired
    rows = []
    for figure in comparison.summary:
        if not comparison.has_baseline:
            rows.append(_Row(label=figure.label, candidate=f"{figure.candidate:.4f}"))
            continue
        note = ", lower is better" if figure.lower_is_better else ""
        test = paired.test_of(figure) if paired is not None else None
        change = test.describe() if test is not None else f"{figure.change:+.4f}{note}"
        rows.append(
            _Row(label=figure.label, candidate=f"{figure.candidate:.4f}", production=f"{figure.baseline:.4f}", change=change)
        )
    worst = comparison.worst_recall
    if worst is not None:
        test = paired.test_of(worst) if paired is not None else None
        rows.append(
            _Row(
                label=f"worst per-class recall (class {worst.class_index})",
                candidate=f"{worst.candidate:.4f}",
                production=f"{worst.baseline:.4f}",
                change=test.describe() if test is not None else f"{worst.change:+.4f}",
            )
        )
    return rows


def _comparison_line(req: ApprovalRequest) -> str:
    held_out = f"{req.candidate.examples} held-out examples"
    if req.production is None:
        return f"First version: no production version to compare with ({held_out})."
    against = f"v{req.production_version}" if req.production_version is not None else "the production version"
    return f"Candidate v{req.version} against production {against} on {held_out}."


def _fallback_text(title: str, req: ApprovalRequest) -> str:
    accuracy = f"accuracy {req.candidate.accuracy:.4f}"
    if req.production is not None:
        against = f" v{req.production_version}" if req.production_version is not None else ""
        accuracy += f" vs production{against} {req.production.accuracy:.4f} ({req.candidate.accuracy - req.production.accuracy:+.4f})"
    else:
        accuracy += " (no production version yet)"
    return f"{title}: {accuracy}; decision: {req.decision.outcome.value}"


def _body_blocks(req: ApprovalRequest, prefix: str, title: str, reasons_title: str) -> list[Block]:
    """Header, summary, metrics, reasons, then batches and links when there are any."""
    blocks: list[Block] = [
        header(f"{prefix}:header", title),
        section(f"{prefix}:summary", f"{escape(_comparison_line(req))} Decision: *{req.decision.outcome.value}*"),
        SectionBlock(block_id=f"{prefix}:metrics", fields=[_metric_field(row) for row in _metric_rows(req)]),
        section(
            f"{prefix}:reasons",
            f"*{reasons_title}*\n" + bullets(req.decision.reasons, SECTION_TEXT_MAX - len(reasons_title) - 3),
        ),
    ]
    if req.batches:
        shown = ", ".join(f"`{escape(name)}`" for name in req.batches[:_MAX_BATCHES_SHOWN])
        more = len(req.batches) - _MAX_BATCHES_SHOWN
        if more > 0:
            shown += f" and {more} more"
        blocks.append(context(f"{prefix}:batches", f"Trained on {len(req.batches)} batch(es): {shown}"))
    pages = ((req.version_url, "Release dashboard"), (req.flow_run_url, "Prefect flow run"), (req.report_url, "Validation report"))
    links = [link(url, label) for url, label in pages if url]
    if links:
        blocks.append(section(f"{prefix}:links", "  ·  ".join(links)))
    return blocks


def _metric_field(row: _Row) -> MarkdownTextObject:
    text = f"*{row.label}*\n`{row.candidate}`"
    if row.production is not None:
        text += f" vs `{row.production}`"
    if row.change is not None:
        text += f" ({row.change})"
    return mrkdwn(text, FIELD_TEXT_MAX)


def _decision_buttons(req: ApprovalRequest) -> list[ButtonElement]:
    value = ActionValue(model=req.model, version=req.version).dump()
    stays = f"Production stays on v{req.production_version}." if req.production_version is not None else "Nothing is served yet."
    canary = (
        [button(APPROVE_CANARY_ACTION_ID, "Approve as canary", value)] if req.production_version is not None else []
    )
    return [
        button(APPROVE_ACTION_ID, "Approve", value, style="primary"),
        *canary,
        button(
            REJECT_ACTION_ID,
            "Reject",
            value,
            style="danger",
            confirm=confirm_dialog(
                f"Reject {req.model} v{req.version}?",
                f"{req.model} v{req.version} will be marked rejected and never served. {stays}",
                yes=f"Reject v{req.version}",
                no="Keep it pending",
            ),
        ),
    ]


def _rollback_block(model: str, from_version: int, to_version: int) -> ActionsBlock:
    """See :func:`rollback_actions`."""
    value = RollbackValue(model=model, from_version=from_version, to_version=to_version).dump()
    confirm = confirm_dialog(
        f"Roll back {model} to v{to_version}?",
        f"Production goes back from v{from_version} to v{to_version} (TF Serving's stable label and the "
        f"registry); v{from_version} is marked rolled_back.",
        yes=f"Roll back to v{to_version}",
        no=f"Keep v{from_version}",
    )
    roll_back = button(ROLLBACK_ACTION_ID, "Roll back", value, style="danger", confirm=confirm)
    return ActionsBlock(block_id=f"rollback:{model}:{from_version}", elements=[roll_back])
