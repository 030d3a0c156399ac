"""The nightly retrain: one night in the life of a model, top to bottom."""

from __future__ import annotations

from typing import Any

from prefect import flow, runtime

from core.orchestrator import FlowRunRef
from core.settings import Settings, get_settings
from core.store_location import store_path
from expectations import suite_path
from flows.hooks import failure_hook
from registry.lifecycle import PRODUCTION
from registry.store import RegistryStore
from slackbot.night import announce_night_failure, decision_announcer
from slackbot.payloads import ClickedMessage
from tasks.comparison import Metrics
from tasks.batches import BatchRecorder, data_fingerprint, training_batches_task
from tasks.data import DataFolders, collect_incoming_task, ensure_bundled_holdout, load_holdout
from tasks.decide import decide
from tasks.evaluate import evaluate_version_task
from tasks.integrity import check_version_files
from tasks.register import Lineage, register_candidate_task
from tasks.release import act_on_decision_task
from tasks.report import NightReport, publish_report_task
from tasks.resume import finish_interrupted_task, untrained_batches
from tasks.retrain_hold import hold_for_retrain
from tasks.serving import lock_holder
from tasks.steps import step
from tasks.train import train_model_task
from tasks.training_data import BatchFiles
from tasks.validate import screen_batches_task


check_baseline_task = step(check_version_files, name="check-baseline-files")


def _night_failed(
    settings: Settings, parameters: dict[str, Any], error: object, step: str | None, origin: ClickedMessage | None, run: FlowRunRef
) -> None:
    announce_night_failure(settings, parameters.get("model", settings.default_model), error, step=step, run=run)


@flow(name="retrain", log_prints=True, on_failure=[failure_hook(_night_failed)])
async def retrain(model: str = "digits") -> NightReport:
    """Retrain ``model`` on the accepted data in its training window and decide whether it
    replaces production.

    First finishes what an interrupted run of ``model`` left (see ``tasks.resume``). Ends
    Completed with outcome ``no_new_data`` when no batch arrived and none accepted earlier was
    left untrained, and Failed (raising ``DataValidationError``) when a new batch breaks the
    data contract: that batch is quarantined with its report, and nothing is trained,
    registered or served. Fails with ``RetrainInProgress``, changing nothing, while another
    retrain of ``model`` runs.
    """
    settings = get_settings()
    config = settings.model(model)
    store = RegistryStore.open(settings.registry_url)
    flow_run_id = str(runtime.flow_run.id) if runtime.flow_run.id else None
    folders = DataFolders.for_model(settings, model)

    # One retrain of a model at a time: a second one (say, a manual run beside the nightly) stops here.
    with hold_for_retrain(store, model, holder=lock_holder("nightly retrain", flow_run_id)) as lease:
        # 0. What an interrupted run left: its candidate's decision, its promotion's write-up.
        lease.ensure_held()
        finished = finish_interrupted_task(store, settings, model, flow_run_id, decision_announcer(settings))

        # 1. New data, checked against the data contract (each accepted batch's SHA-256 and rows
        #    recorded in the registry as it is accepted); batches in the training window that an
        #    interrupted run accepted but never trained on are new data too.
        incoming = collect_incoming_task(folders, bundled=config.source == "digits")
        if incoming:
            lease.ensure_held()
            screen_batches_task(incoming, suite_path(config.suite), folders, record=BatchRecorder(store, model))
        in_window = training_batches_task(store, model, folders, config.training.window)
        training_batches = [folders.accepted / batch.name for batch in in_window]
        if not incoming and not untrained_batches(store, model, training_batches):
            summary = f"{model}: no new data in {folders.incoming}; nothing trained"
            report = NightReport(model=model, outcome="no_new_data", summary="\n".join(filter(None, [finished, summary])))
            publish_report_task(report)
            print(report.summary)
            return report

        # 2. A candidate trained on the accepted batches in the training window, streamed from disk.
        holdout_path = settings.holdout_path(model) or ensure_bundled_holdout(folders)
        holdout_features, holdout_labels, feature_columns = load_holdout(holdout_path, config.label_column)
        training_data = BatchFiles(training_batches, feature_columns, config.label_column)
        trained = train_model_task(training_data, config.training, config.num_classes, config.input_name)

        # 3. The baseline: today's production model, its files checked against their recorded
        #    sha256, scored from its SavedModel on the same held-out set.
        baseline = store.get_alias(model, PRODUCTION)
        holdout = (holdout_features, holdout_labels)
        if baseline is not None:
            check_baseline_task(baseline)
        baseline_metrics = evaluate_version_task(store_path(baseline.path), holdout, config.input_name) if baseline else None

        # 4. The candidate becomes version N: exported atomically, scored from disk, registered.
        lineage = Lineage.current(data_fingerprint([batch.sha256 for batch in in_window]), [batch.name for batch in in_window])
        candidate = register_candidate_task(
            store, settings.model_store, model, trained, config, holdout, lineage, baseline, baseline_metrics, flow_run_id,
            lease.ensure_held, staging=settings.staging_dir(model),
        )

        # 5. The decision, carried out: promote, ask a human, or reject.
        candidate_metrics = Metrics.model_validate(candidate.metrics)
        decision = decide(candidate_metrics, baseline_metrics, config.policy)
        lease.ensure_held()
        summary = act_on_decision_task(store, settings, candidate, decision, flow_run_id, decision_announcer(settings))
        summary = "\n".join(filter(None, [finished, summary]))

        report = NightReport(
            model=model,
            outcome=decision.outcome.value,
            summary=summary,
            version=candidate.version,
            baseline_version=baseline.version if baseline else None,
            candidate=candidate_metrics,
            baseline=baseline_metrics,
            decision=decision,
            batches=lineage.batches,
            version_url=settings.ui.version_url(model, candidate.version),
            production_history=store.production_history(model),
        )
        publish_report_task(report)
        print(summary)
        return report
