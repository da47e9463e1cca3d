"""Generated protobuf and gRPC code of the waferscope contracts. Do not edit.

The sources are ``protocols/proto/waferscope/protocols/pb/*.proto``; ``just protos``
(``scripts/protos.sh``) regenerates the ``*_pb2.py``, ``*_pb2.pyi``, ``*_pb2_grpc.py`` and
``*_pb2_grpc.pyi`` modules here and ``just protos-check`` (``scripts/check-protos.sh``) verifies
they are fresh. Import the modules directly, e.g.
``from waferscope.protocols.pb import result_pb2``; MQTT payloads go through
:mod:`waferscope.protocols.messages`.
"""
