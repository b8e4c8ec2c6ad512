"""The kubelet's PodResources service for tests: a real gRPC server on a Unix socket.

It answers ``List`` with the pods a test sets, as a kubelet answers with the
pods it runs and the devices it assigned to them. A thread-pool server, so it
answers while a test blocks on ``kubectl``.
"""

from __future__ import annotations

import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from kubeletapi.podresources.v1 import api_pb2, api_pb2_grpc


def pod(namespace: str, name: str, container: str,
        devices: dict[str, list[str]]) -> api_pb2.PodResources:
    """One pod with one container holding ``devices`` (resource -> device IDs)."""
    return api_pb2.PodResources(namespace=namespace, name=name, containers=[
        api_pb2.ContainerResources(name=container, devices=[
            api_pb2.ContainerDevices(resource_name=r, device_ids=ids)
            for r, ids in devices.items()])])


class PodResourcesServer(api_pb2_grpc.PodResourcesListerServicer):
    """Serves ``PodResourcesLister`` at ``socket`` while started."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.pods: list[api_pb2.PodResources] = []
        self.lists = 0
        """How many times ``List`` was called."""
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None

    def set_pods(self, *pods: api_pb2.PodResources) -> None:
        with self._lock:
            self.pods = list(pods)

    def List(self, request: api_pb2.ListPodResourcesRequest, context: Any
             ) -> api_pb2.ListPodResourcesResponse:
        with self._lock:
            self.lists += 1
            return api_pb2.ListPodResourcesResponse(pod_resources=self.pods)

    def start(self) -> PodResourcesServer:
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        api_pb2_grpc.add_PodResourcesListerServicer_to_server(self, server)
        server.add_insecure_port(f"unix://{self.socket}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None
        self.socket.unlink(missing_ok=True)
