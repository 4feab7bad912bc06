"""Forward-window benchmark: how long a big namespace takes to reach the window, and what each step
costs the GUI thread.

    .venv/bin/python tests/bench/bench_picker.py [--objects 2000 5000 10000]

For each size, in this process: a simulator with that many services (two ports each) in one
namespace, a `Browser` on a real KubeApi over loopback (list + watch), and the window's
`PickerModel` fed its updates. Measured: time from `show()` to the last row, the updates it took,
the model's sort after an update and its filter per keystroke (both on the GUI thread in the app),
and one watch change from the store to the model (this includes the simulator's own reconcile of
the change, which copies every service; the engine's share is the flush column). Offscreen Qt (`QT_QPA_PLATFORM=offscreen`): the
window's table rebuilt over all rows. Prints a Markdown table; a measurement, it always exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from trayapp.engine.browse import Browser, Rows, Update  # noqa: E402
from trayapp.engine.kube import Credentials, KubeApi  # noqa: E402
from trayapp.sim import SimCluster  # noqa: E402
from trayapp.ui.picker_model import PickerModel  # noqa: E402


def service(index: int) -> dict[str, object]:
    return {"kind": "Service", "metadata": {"name": f"svc-{index:05d}", "namespace": "big", "labels": {}},
            # No selector: the simulator's endpoints controller then skips them; with selectors it
            # scans every pod for every service on each change, which would be the thing measured.
            "spec": {"type": "ClusterIP",
                     "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "targetPort": 8080},
                               {"name": "grpc", "port": 9090, "protocol": "TCP", "targetPort": 9090}]}}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


async def one(count: int, folder: Path) -> dict[str, str]:
    async with SimCluster("bench") as cluster:
        cluster.create({"kind": "Namespace", "metadata": {"name": "big"}, "spec": {}, "status": {}})
        for index in range(count):
            cluster.store.create(service(index))
        path = cluster.write_kubeconfig(folder / f"kubeconfig-{count}")
        credentials = Credentials([path], None)
        api = KubeApi(await asyncio.to_thread(credentials.load), credentials)
        model = PickerModel("big")
        updates: list[Update] = []
        arrived = asyncio.Event()

        def take(update: Update) -> None:
            updates.append(update)
            model.apply(update)
            arrived.set()

        browser = Browser(api, take)
        flushes: list[float] = []
        flush = browser._flush

        def timed_flush() -> None:  # the engine's own cost of a change: diff, summaries, batches
            started = time.perf_counter()
            flush()
            flushes.append(time.perf_counter() - started)

        browser._flush = timed_flush  # type: ignore[method-assign]
        started = time.perf_counter()
        await browser.show("big")
        while not (model.complete and len(model.rows) == count):
            arrived.clear()
            await arrived.wait()
        listed = time.perf_counter() - started
        batches = sum(1 for u in updates if isinstance(u, Rows))

        started = time.perf_counter()
        entries = len(model.visible)  # the sort after an update
        sort = time.perf_counter() - started
        query = ""
        keystrokes = []
        for char in f"svc-{count - 1:05d} grpc":
            query += char
            started = time.perf_counter()
            model.set_query(query)
            _ = model.visible
            keystrokes.append(time.perf_counter() - started)

        changed = cluster.get("services", "big", "svc-00000")
        assert changed is not None
        changed["spec"]["ports"].append({"name": "admin", "port": 9901, "protocol": "TCP", "targetPort": 9901})
        started = time.perf_counter()
        flushes.clear()
        cluster.store.update(changed)
        while len(model.rows[(next(iter(model.rows))[0], "svc-00000")].ports) != 3:
            arrived.clear()
            await arrived.wait()
        watch = time.perf_counter() - started
        await browser.close()

        table = "-"
        if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
            from PySide6.QtWidgets import QApplication

            from trayapp.ui.picker import PickerWindow

            _app = QApplication.instance() or QApplication([])
            window = PickerWindow("bench", "big", lambda port: None, lambda draft: "")  # type: ignore[arg-type,return-value]
            window.model = model
            window.table.model = model
            model.set_query("")
            started = time.perf_counter()
            window._refresh()
            table = ms(time.perf_counter() - started)
            window.deleteLater()
        return {"objects": str(count), "rows": str(entries), "list -> model ms": ms(listed), "updates": str(batches),
                "sort ms": ms(sort), "filter ms/key (max)": ms(max(keystrokes)), "watch -> model ms": ms(watch),
                "engine flush ms (1 change)": ms(max(flushes)),
                "table rebuild ms": table}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, nargs="+", default=[2000, 5000, 10000])
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for count in args.objects:
            results.append(await one(count, Path(folder)))
    columns = list(results[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for result in results:
        print("| " + " | ".join(result[c] for c in columns) + " |")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.exit(asyncio.run(main()))
