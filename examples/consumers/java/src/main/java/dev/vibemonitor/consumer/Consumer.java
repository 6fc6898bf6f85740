// Reads deployments.v1 in a consumer group and prints what is running where.
//
// Each record's CloudEvents headers are checked, its value is validated with
// networknt's json-schema-validator against the published schema its
// ce_dataschema names, events are deduplicated by event id, and a version
// this consumer has no schema for is skipped with a warning. With --dlq it
// reads <topic>.dlq and prints each dead letter's reason. The contract:
// schemas/asyncapi.json and docs/consuming.md.
//
//   Consumer --brokers 127.0.0.1:9092 --topic deployments.v1 --group rca-java \
//       --schemas schemas [--until-caught-up] [--dlq]
package dev.vibemonitor.consumer;

import com.networknt.schema.Error;
import com.networknt.schema.Schema;
import com.networknt.schema.SchemaRegistry;
import com.networknt.schema.SchemaRegistryConfig;
import com.networknt.schema.SpecificationVersion;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.ObjectMapper;
import tools.jackson.databind.node.JsonNodeFactory;
import tools.jackson.databind.node.ObjectNode;

public final class Consumer {
  private static final Pattern CE_TYPE =
      Pattern.compile("^com\\.vibemonitor\\.deployment\\.reported\\.v([0-9]+)$");
  private static final List<String> REQUIRED =
      List.of("ce_specversion", "ce_id", "ce_type", "ce_dataschema", "ce_source", "ce_time", "content-type");
  private static final Map<String, Integer> RANK =
      Map.of("pending", 0, "in_progress", 1, "success", 2, "failed", 2, "cancelled", 2);
  private static final ObjectMapper JSON = new ObjectMapper();

  /** One schema version: its $id and the compiled schema. */
  record Version(String id, Schema schema) {}

  /** (workspace, environment, repository): what "running" is kept per. */
  record Key(String workspace, String environment, String repository) {}

  /** A record this consumer does not apply, and why. */
  static final class Refused extends Exception {
    final String counter;

    Refused(String counter, String why) {
      super(why);
      this.counter = counter;
    }
  }

  private final Map<String, JsonNode> deployments = new HashMap<>();
  private final Map<Key, JsonNode> running = new HashMap<>();
  private final Set<String> seen = new HashSet<>();
  private final Map<String, Integer> counts =
      new TreeMap<>(Map.of("events", 0, "duplicates", 0, "skipped", 0, "invalid", 0));

  private static String text(JsonNode e, String field) {
    JsonNode v = e.get(field);
    return v == null || v.isNull() ? null : v.asString();
  }

  /** Whether report a ranks above b: (status rank, deployed_at, received_at, event id). */
  private static boolean newer(JsonNode a, JsonNode b) {
    Comparator<JsonNode> order =
        Comparator.<JsonNode, Integer>comparing(e -> RANK.get(text(e, "status")))
            .thenComparing(e -> Instant.parse(text(e, "deployed_at")))
            .thenComparing(e -> Instant.parse(text(e, "received_at")))
            .thenComparing(e -> text(e, "event_id"));
    return order.compare(a, b) > 0;
  }

  void apply(JsonNode e) {
    if (!seen.add(text(e, "event_id"))) {
      counts.merge("duplicates", 1, Integer::sum);
      return;
    }
    counts.merge("events", 1, Integer::sum);
    String id = text(e, "deployment_id");
    JsonNode old = deployments.get(id);
    if (old != null && !newer(e, old)) {
      return;
    }
    deployments.put(id, e);
    if (old == null || !Objects.equals(text(old, "status"), text(e, "status"))) {
      System.out.printf("status   %s %s%n", id, text(e, "status"));
    }
    refresh(new Key(text(e, "workspace_id"), text(e, "environment"), text(e, "repository")));
  }

  private void refresh(Key key) {
    JsonNode best = null;
    for (JsonNode d : deployments.values()) {
      Key k = new Key(text(d, "workspace_id"), text(d, "environment"), text(d, "repository"));
      if (!k.equals(key) || !"success".equals(text(d, "status"))) {
        continue;
      }
      if (best == null) {
        best = d;
        continue;
      }
      int c = Instant.parse(text(d, "deployed_at")).compareTo(Instant.parse(text(best, "deployed_at")));
      if (c > 0 || (c == 0 && text(d, "deployment_id").compareTo(text(best, "deployment_id")) > 0)) {
        best = d;
      }
    }
    if (best == null) {
      // No success left (e.g. the only one overturned by a later failure of
      // the same deployment): nothing of it runs there.
      if (running.remove(key) != null) {
        System.out.printf("gone     %s %s (workspace %s)%n", key.environment(), key.repository(), key.workspace());
      }
      return;
    }
    ObjectNode now = JsonNodeFactory.instance.objectNode();
    for (String f : List.of("deployment_id", "commit_sha", "branch", "deployed_at")) {
      now.put(f, text(best, f));
    }
    if (!now.equals(running.get(key))) {
      running.put(key, now);
      System.out.printf("running  %s %s %s (deployment %s, workspace %s)%n", key.environment(),
          key.repository(), text(best, "commit_sha"), text(best, "deployment_id"), key.workspace());
    }
  }

  ObjectNode summary() {
    ObjectNode out = JsonNodeFactory.instance.objectNode();
    ObjectNode run = out.putObject("running");
    running.forEach((k, now) -> {
      ObjectNode ws = run.has(k.workspace()) ? (ObjectNode) run.get(k.workspace()) : run.putObject(k.workspace());
      ObjectNode env = ws.has(k.environment()) ? (ObjectNode) ws.get(k.environment()) : ws.putObject(k.environment());
      env.set(k.repository(), now);
    });
    ObjectNode statuses = out.putObject("deployments");
    deployments.forEach((id, e) -> statuses.put(id, text(e, "status")));
    counts.forEach(out::put);
    return out;
  }

  static Map<Integer, Version> loadSchemas(Path dir) throws Exception {
    SchemaRegistry registry = SchemaRegistry.withDefaultDialect(SpecificationVersion.DRAFT_2020_12,
        b -> b.schemaRegistryConfig(SchemaRegistryConfig.builder().formatAssertionsEnabled(true).build()));
    Map<Integer, Version> out = new HashMap<>();
    Pattern name = Pattern.compile("^deployment-reported\\.v([0-9]+)\\.schema\\.json$");
    try (DirectoryStream<Path> files = Files.newDirectoryStream(dir, "deployment-reported.v*.schema.json")) {
      for (Path f : files) {
        Matcher m = name.matcher(f.getFileName().toString());
        if (!m.matches()) {
          continue;
        }
        String json = Files.readString(f);
        String id = JSON.readTree(json).get("$id").asString();
        out.put(Integer.parseInt(m.group(1)), new Version(id, registry.getSchema(json)));
      }
    }
    return out;
  }

  private static Map<String, String> headers(ConsumerRecord<byte[], byte[]> r) {
    Map<String, String> h = new HashMap<>();
    for (Header header : r.headers()) {
      h.put(header.key(), header.value() == null ? "" : new String(header.value(), StandardCharsets.UTF_8));
    }
    return h;
  }

  static JsonNode check(ConsumerRecord<byte[], byte[]> r, Map<Integer, Version> schemas) throws Refused {
    String where = "partition " + r.partition() + " offset " + r.offset();
    Map<String, String> h = headers(r);
    for (String name : REQUIRED) {
      if (!h.containsKey(name)) {
        throw new Refused("invalid", where + ": missing CloudEvents header " + name);
      }
    }
    if (!"1.0".equals(h.get("ce_specversion")) || !"application/json".equals(h.get("content-type"))) {
      throw new Refused("invalid", where + ": not a CloudEvents 1.0 JSON record");
    }
    Matcher m = CE_TYPE.matcher(h.get("ce_type"));
    Version v = m.matches() ? schemas.get(Integer.parseInt(m.group(1))) : null;
    if (v == null) {
      throw new Refused("skipped", where + ": unknown ce_type " + h.get("ce_type") + ", skipped");
    }
    if (!v.id().equals(h.get("ce_dataschema"))) {
      throw new Refused("invalid", where + ": ce_dataschema " + h.get("ce_dataschema") + " is not " + v.id());
    }
    JsonNode event;
    try {
      event = JSON.readTree(r.value());
    } catch (RuntimeException err) {
      throw new Refused("invalid", where + ": value is not JSON: " + err.getMessage());
    }
    if (event == null || event.isMissingNode()) {
      throw new Refused("invalid", where + ": value is not JSON");
    }
    List<Error> errors = v.schema().validate(event);
    if (!errors.isEmpty()) {
      throw new Refused("invalid", where + ": not a " + h.get("ce_type") + " event: " + errors.get(0).getMessage());
    }
    if (!h.get("ce_id").equals(text(event, "event_id"))
        || !h.get("ce_source").equals("/workspaces/" + text(event, "workspace_id"))) {
      throw new Refused("invalid", where + ": headers do not match the event");
    }
    // Instant.parse (ISO_INSTANT) is case-insensitive, so RFC 3339's lowercase
    // "t" and "z" are read like "T" and "Z"; anything else it refuses makes
    // the record invalid rather than an exception later.
    for (String field : List.of("deployed_at", "received_at")) {
      try {
        Instant.parse(text(event, field));
      } catch (RuntimeException err) {
        throw new Refused("invalid", where + ": " + field + ": " + err.getMessage());
      }
    }
    return event;
  }

  static ObjectNode deadLetter(ConsumerRecord<byte[], byte[]> r) {
    Map<String, String> h = headers(r);
    ObjectNode d = JsonNodeFactory.instance.objectNode();
    d.put("reason_class", h.get("dlq_reason_class"));
    d.put("reason", h.get("dlq_reason"));
    d.put("original_topic", h.get("dlq_original_topic"));
    d.put("original_partition", Long.parseLong(h.getOrDefault("dlq_original_partition", "-1")));
    d.put("original_offset", Long.parseLong(h.getOrDefault("dlq_original_offset", "-1")));
    System.out.printf("dead     %s %s/%s@%s: %s%n", h.get("dlq_reason_class"), h.get("dlq_original_topic"),
        h.get("dlq_original_partition"), h.get("dlq_original_offset"), h.get("dlq_reason"));
    return d;
  }

  public static void main(String[] argv) throws Exception {
    // kafka-clients logs every config at info; warnings are what matter here.
    System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
    Map<String, String> args = new HashMap<>(Map.of(
        "--brokers", Objects.requireNonNullElse(System.getenv("KAFKA_BROKERS"), "127.0.0.1:9092"),
        "--topic", "deployments.v1",
        "--schemas", "schemas"));
    Set<String> flags = new HashSet<>();
    for (int i = 0; i < argv.length; i++) {
      if (argv[i].equals("--until-caught-up") || argv[i].equals("--dlq")) {
        flags.add(argv[i]);
      } else if (i + 1 < argv.length && argv[i].startsWith("--")) {
        args.put(argv[i], argv[++i]);
      } else {
        System.err.println("usage: Consumer --group G [--brokers B] [--topic T] [--schemas DIR] [--until-caught-up] [--dlq]");
        System.exit(2);
      }
    }
    if (!args.containsKey("--group")) {
      System.err.println("--group is required");
      System.exit(2);
    }
    boolean dlq = flags.contains("--dlq");
    boolean untilCaughtUp = flags.contains("--until-caught-up");
    String topic = args.get("--topic") + (dlq ? ".dlq" : "");

    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args.get("--brokers"));
    props.put(ConsumerConfig.GROUP_ID_CONFIG, args.get("--group"));
    props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());

    Map<Integer, Version> schemas = loadSchemas(Path.of(args.get("--schemas")));
    Consumer model = new Consumer();
    List<ObjectNode> dead = new ArrayList<>();
    try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
      List<TopicPartition> partitions = consumer.partitionsFor(topic, Duration.ofSeconds(10)).stream()
          .map(p -> new TopicPartition(topic, p.partition())).collect(Collectors.toList());
      if (partitions.isEmpty()) {
        // A topic that is not there: a mistyped --topic, not an empty stream.
        System.err.println("error: topic " + topic + ": it does not exist on " + args.get("--brokers"));
        System.exit(1);
      }
      Map<TopicPartition, Long> starts = consumer.beginningOffsets(partitions);
      Map<TopicPartition, Long> ends = new HashMap<>(consumer.endOffsets(partitions));
      ends.entrySet().removeIf(e -> e.getValue() <= starts.get(e.getKey()));
      Map<TopicPartition, Long> next = new HashMap<>();
      consumer.subscribe(List.of(topic));
      while (!(untilCaughtUp
          && ends.entrySet().stream().allMatch(e -> next.getOrDefault(e.getKey(), 0L) >= e.getValue()))) {
        for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
          next.put(new TopicPartition(r.topic(), r.partition()), r.offset() + 1);
          if (dlq) {
            dead.add(deadLetter(r));
            continue;
          }
          try {
            model.apply(check(r, schemas));
          } catch (Refused why) {
            model.counts.merge(why.counter, 1, Integer::sum);
            System.err.println("warning: " + why.getMessage());
          }
        }
      }
      consumer.commitSync();
    }
    ObjectNode out;
    if (dlq) {
      dead.sort(Comparator.<ObjectNode>comparingLong(d -> d.get("original_partition").asLong())
          .thenComparingLong(d -> d.get("original_offset").asLong()));
      out = JsonNodeFactory.instance.objectNode();
      out.putArray("dead_letters").addAll(dead);
    } else {
      out = model.summary();
    }
    System.out.println(JSON.writeValueAsString(out));
  }
}
