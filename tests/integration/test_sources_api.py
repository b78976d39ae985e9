"""`/api/v1/sources`: versioned writes by managers, reads by every role, refusals with a code of
their own, deletion that keeps the history, and a source's tracking state."""

from __future__ import annotations

import httpx

from tests.integration.api_server import ApiServer, login

A4 = {
    "kind": "four_points",
    "image_points": [[120, 80], [520, 90], [600, 420], [40, 400]],
    "rectangle_cm": [29.7, 21.0],
}


def _put(api: ApiServer, headers: dict, source_id: str, body: dict) -> httpx.Response:
    return httpx.put(f"{api.url}/api/v1/sources/{source_id}", json=body, headers=headers)


def test_sources_are_versioned_checked_and_deleted_with_their_history(api: ApiServer) -> None:
    manager, viewer = login(api, "manager"), login(api, "viewer")
    url = f"{api.url}/api/v1/sources"
    body = {
        "name": "kitchen counter",
        "calibration": A4,
        "zones": {"tray": {"polygon": [[5, 5], [25, 5], [25, 18], [5, 18]], "unit": "cm"}},
        "rules": {"tags": ["kitchen"]},
        "sampling": {"interval_s": 5},
    }
    refused = _put(api, viewer, "kitchen-1", body)
    assert refused.status_code == 403, refused.text
    created = _put(api, manager, "kitchen-1", body)
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    assert created.json()["source"]["zones"]["tray"]["unit"] == "cm"
    updated = _put(api, manager, "kitchen-1", {**body, "model": "mugdet-synth:1.0.0"})
    assert updated.status_code == 200, updated.text
    assert updated.json()["version"] == 2

    now = httpx.get(f"{url}/kitchen-1", headers=viewer).json()
    assert (now["version"], now["source"]["model"]) == (2, "mugdet-synth:1.0.0")
    first = httpx.get(f"{url}/kitchen-1", params={"version": 1}, headers=viewer).json()
    assert first["source"]["model"] is None
    assert [
        s["version"] for s in httpx.get(f"{url}/kitchen-1/versions", headers=viewer).json()
    ] == [2, 1]
    assert [s["source_id"] for s in httpx.get(url, headers=viewer).json()] == ["kitchen-1"]

    state = httpx.get(f"{url}/kitchen-1/state", headers=viewer)
    assert state.status_code == 200, state.text
    assert (state.json()["frames"], state.json()["tracks"]) == (0, [])

    deleted = httpx.delete(f"{url}/kitchen-1", headers=manager)
    assert deleted.status_code == 200, deleted.text
    assert (deleted.json()["version"], deleted.json()["deleted"]) == (3, True)
    gone = httpx.get(f"{url}/kitchen-1", headers=viewer)
    assert (gone.status_code, gone.json()["code"]) == (404, "unknown_source")
    assert httpx.get(url, headers=viewer).json() == []
    assert len(httpx.get(f"{url}/kitchen-1/versions", headers=viewer).json()) == 3
    unknown = httpx.get(f"{url}/nobody/state", headers=viewer)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_source")


def test_calibrations_and_zones_the_analysis_cannot_use_are_refused(api: ApiServer) -> None:
    manager = login(api, "manager")
    on_a_line = {**A4, "image_points": [[0, 0], [100, 0], [200, 0], [300, 0]]}
    cases = {
        "four points on one line": ({"calibration": on_a_line}, "source_invalid"),
        "no triangle": (
            {
                "calibration": {
                    "kind": "four_points",
                    "image_points": A4["image_points"],
                    "distances_cm": {"ab": 10, "bc": 10, "cd": 10, "da": 10, "ac": 30},
                }
            },
            "source_invalid",
        ),
        "cm zone, no calibration": (
            {"zones": {"z": {"polygon": [[0, 0], [1, 0], [1, 1]], "unit": "cm"}}},
            "source_invalid",
        ),
        "both sizes": (
            {"calibration": {**A4, "distances_cm": {"ab": 1, "bc": 1, "cd": 1, "da": 1, "ac": 1}}},
            "validation_error",
        ),
        "bad tag": ({"rules": {"tags": ["Not A Tag"]}}, "validation_error"),
    }
    for name, (body, code) in cases.items():
        reply = _put(api, manager, "cam-x", body)
        assert reply.status_code == 422, (name, reply.text)
        problem = reply.json()
        assert problem["code"] == code, (name, problem)
        assert "Traceback" not in reply.text
    assert httpx.get(f"{api.url}/api/v1/sources/cam-x", headers=manager).status_code == 404
