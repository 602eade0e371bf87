"""The fault battery on a Redis Cluster: the worker faults of the Redis battery, run as
they are, with the state on a cluster of the scenario's own (:mod:`tests.battery.cluster_world`).

Each prints its line; the primary failover is :mod:`tests.battery.test_failover`.
"""

from __future__ import annotations

import pytest

from tests.battery import test_workers as worker_faults
from tests.battery.cluster_world import ClusterBattery, cluster_battery  # noqa: F401

pytestmark = [pytest.mark.battery, pytest.mark.integration, pytest.mark.timeout(400)]


def test_pool_children_killed_repeatedly_on_a_cluster(cluster_battery: ClusterBattery) -> None:  # noqa: F811
    worker_faults.test_pool_children_killed_repeatedly(cluster_battery)


def test_whole_worker_killed_and_restarted_on_a_cluster(cluster_battery: ClusterBattery) -> None:  # noqa: F811
    worker_faults.test_whole_worker_killed_and_restarted(cluster_battery)


def test_paused_worker_late_commit_is_refused_on_a_cluster(
    cluster_battery: ClusterBattery,  # noqa: F811
) -> None:
    worker_faults.test_paused_worker_late_commit_is_refused(cluster_battery)


def test_workers_scaled_up_and_down_on_a_cluster(cluster_battery: ClusterBattery) -> None:  # noqa: F811
    worker_faults.test_workers_scaled_up_and_down(cluster_battery)
