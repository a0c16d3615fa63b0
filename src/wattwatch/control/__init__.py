"""Control: on/off commands over MQTT with timeouts, their audit trail, and schedules."""
