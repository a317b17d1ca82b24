"""The Kafka client classes the tools use (simulator, collectors, backfill, terminal view).

The runtime package is the one that talks to Kafka (``lint-imports`` checks that no other
imports faust or aiokafka), so the tools take their producers and consumers from here.
"""

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError

__all__ = ["AIOKafkaAdminClient", "AIOKafkaConsumer", "AIOKafkaProducer", "KafkaConnectionError", "KafkaError",
           "TopicPartition"]
