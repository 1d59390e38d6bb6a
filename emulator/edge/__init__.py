"""The edge: the model package format (package.py) and the Lookout for Vision Edge Agent (agent.py).

Nothing here imports the web stack, so ``lookout-emulator edge-agent`` runs on a device without it.
``edge-agent.proto`` is the gRPC API; ``edge_agent_pb2*.py`` are generated from it and committed
(regenerate with the command in the README's "Running models on a device" section).
"""

# The path every published Lookout for Vision edge client connects to.
DEFAULT_SOCKET = "/tmp/aws.iot.lookoutvision.EdgeAgent.sock"  # noqa: S108 - fixed by the clients
# DetectAnomalies requests that may wait for a running model before more are refused.
DEFAULT_QUEUE_SIZE = 8
