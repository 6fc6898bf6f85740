#!/bin/sh
# The broker's API versions, as apache/kafka's script of this name (the
# compose health check runs it).
exec java -Xmx128m -cp '/opt/kafka/libs/*' org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
