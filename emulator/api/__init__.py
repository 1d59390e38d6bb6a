"""The Lookout for Vision HTTP API, generic over the botocore service model: routes, wire protocol,
validation, the operation registry, errors, pagination and idempotency. Behaviour lives in `emulator.services`."""
