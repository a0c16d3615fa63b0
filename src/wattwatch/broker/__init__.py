"""MQTT: the embedded broker (amqtt, hardened) and the external-broker client (shared subs).

``embedded.EmbeddedBroker`` and ``external.ExternalBroker`` both implement ``rpc.Transport``
(server-side publish, request/response) and hand device messages to a ``sink.MessageSink``
(``wattwatch.ingest.mqtt.MqttIngest``); ``auth`` says who a connection is and what it may do.
"""
