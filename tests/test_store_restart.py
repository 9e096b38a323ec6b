"""PostgreSQL restarted in the middle of a batch: no event or archive row lost or doubled."""

from store import cases
from store.database import EmbeddedDatabase, open_pool
from tests.support.people import review_by
from tests.support.stack import running_workers, settings_for


def restart(database: EmbeddedDatabase) -> None:
    import pgserver.postgres_server

    database.stop_if_started_here()
    # pgserver keeps one handle per folder and would hand back the stopped one.
    pgserver.postgres_server.PostgresServer._instances.pop(database.data_dir.resolve(), None)
    database.url()


async def test_a_database_restart_mid_batch_loses_and_doubles_nothing(stack, tmp_path):
    database = EmbeddedDatabase(tmp_path / "postgres")
    pool = await open_pool(database.url())
    try:
        async with running_workers(stack, settings_for(stack.standins), pool=pool):
            applications = [stack.application("hukou_verified", index=i) for i in range(18, 26)]
            applications += [stack.application("not_eligible_age", index=i) for i in range(3, 6)]
            handles = [await stack.submit(application) for application in applications[:6]]
            restart(database)
            handles += [await stack.submit(application) for application in applications[6:]]
            waiting = []
            for application, handle in zip(applications, handles, strict=False):
                view = await stack.wait_for(handle, "awaiting_review", "not_eligible", timeout=60)
                if view.status == "awaiting_review":
                    waiting.append((application, handle))
            restart(database)
            for application, handle in waiting:
                receipt = await stack.people.send(
                    handle,
                    review_by(application.district_code, "approve", "同意"),
                )
                assert receipt.accepted, (application.application_id, receipt)
            finals = [await stack.result(handle) for handle in handles]
        for view in finals:
            record = await cases.case_record(pool, view.application_id)
            assert record is not None, f"{view.application_id} is not in the store"
            assert [e["seq"] for e in record["events"]] == list(range(len(view.timeline))), view.application_id
            assert [e["step"] for e in record["events"]] == [e.step for e in view.timeline]
            assert sorted(d["kind"] for d in record["archive"]) == ["acceptance", "result", "review"]
            assert record["case"]["status"] == view.status and record["case"]["platform_synced"]
    finally:
        await pool.close()
        database.stop_if_started_here()
