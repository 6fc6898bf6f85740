// Command consumer reads deployments.v1 in a consumer group and prints what
// is running where.
//
// Each record's CloudEvents headers are checked, its value is validated with
// santhosh-tekuri/jsonschema against the published schema its ce_dataschema
// names, events are deduplicated by event id, and a version this consumer has
// no schema for is skipped with a warning. With -dlq it reads <topic>.dlq and
// prints each dead letter's reason. The contract: schemas/asyncapi.json and
// docs/consuming.md.
//
//	consumer -brokers 127.0.0.1:9092 -topic deployments.v1 -group rca-go \
//	    -schemas schemas [-until-caught-up] [-dlq]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

var (
	ceType   = regexp.MustCompile(`^com\.vibemonitor\.deployment\.reported\.v([0-9]+)$`)
	required = []string{"ce_specversion", "ce_id", "ce_type", "ce_dataschema", "ce_source", "ce_time", "content-type"}
	rankOf   = map[string]int{"pending": 0, "in_progress": 1, "success": 2, "failed": 2, "cancelled": 2}
)

// event holds the fields of DeploymentReported this consumer uses.
type event struct {
	EventID      string  `json:"event_id"`
	DeploymentID string  `json:"deployment_id"`
	WorkspaceID  string  `json:"workspace_id"`
	Environment  string  `json:"environment"`
	Repository   string  `json:"repository"`
	Branch       *string `json:"branch"`
	CommitSHA    *string `json:"commit_sha"`
	Status       string  `json:"status"`
	DeployedAt   string  `json:"deployed_at"`
	ReceivedAt   string  `json:"received_at"`
}

type schema struct {
	id     string
	schema *jsonschema.Schema
}

type key struct{ workspace, environment, repository string }

type running struct {
	DeploymentID string  `json:"deployment_id"`
	CommitSHA    *string `json:"commit_sha"`
	Branch       *string `json:"branch"`
	DeployedAt   string  `json:"deployed_at"`
}

// model keeps each deployment's greatest report, and per (workspace,
// environment, repository) its latest successful deployment: the projector's rules.
type model struct {
	deployments map[string]event
	running     map[key]running
	seen        map[string]bool
	counts      map[string]int
}

func warn(format string, args ...any) { fmt.Fprintf(os.Stderr, "warning: "+format+"\n", args...) }

// parseInstant reads an RFC 3339 date-time. RFC 3339 (and the schema's
// "format": "date-time") allows a lowercase "t" and "z", which Go's
// time.RFC3339 layout does not, so those two are upper-cased first.
func parseInstant(s string) (time.Time, error) {
	if len(s) > 10 && s[10] == 't' {
		s = s[:10] + "T" + s[11:]
	}
	if strings.HasSuffix(s, "z") {
		s = s[:len(s)-1] + "Z"
	}
	return time.Parse(time.RFC3339Nano, s)
}

// instant is parseInstant of a timestamp check already parsed.
func instant(s string) time.Time {
	t, err := parseInstant(s)
	if err != nil {
		panic(err) // check refuses an event whose timestamps do not parse
	}
	return t
}

// newer says whether report a ranks above b: (status rank, deployed_at, received_at, event id).
func newer(a, b event) bool {
	if ra, rb := rankOf[a.Status], rankOf[b.Status]; ra != rb {
		return ra > rb
	}
	if da, db := instant(a.DeployedAt), instant(b.DeployedAt); !da.Equal(db) {
		return da.After(db)
	}
	if ra, rb := instant(a.ReceivedAt), instant(b.ReceivedAt); !ra.Equal(rb) {
		return ra.After(rb)
	}
	return a.EventID > b.EventID
}

func (m *model) apply(e event) {
	if m.seen[e.EventID] {
		m.counts["duplicates"]++
		return
	}
	m.seen[e.EventID] = true
	m.counts["events"]++
	old, known := m.deployments[e.DeploymentID]
	if known && !newer(e, old) {
		return
	}
	m.deployments[e.DeploymentID] = e
	if !known || old.Status != e.Status {
		fmt.Printf("status   %s %s\n", e.DeploymentID, e.Status)
	}
	m.refresh(key{e.WorkspaceID, e.Environment, e.Repository})
}

func (m *model) refresh(k key) {
	var best *event
	for _, d := range m.deployments {
		if (key{d.WorkspaceID, d.Environment, d.Repository}) != k || d.Status != "success" {
			continue
		}
		if best == nil || instant(d.DeployedAt).After(instant(best.DeployedAt)) ||
			(instant(d.DeployedAt).Equal(instant(best.DeployedAt)) && d.DeploymentID > best.DeploymentID) {
			d := d
			best = &d
		}
	}
	if best == nil {
		// No success left (e.g. the only one overturned by a later failure
		// of the same deployment): nothing of it runs there.
		if _, ok := m.running[k]; ok {
			delete(m.running, k)
			fmt.Printf("gone     %s %s (workspace %s)\n", k.environment, k.repository, k.workspace)
		}
		return
	}
	now := running{best.DeploymentID, best.CommitSHA, best.Branch, best.DeployedAt}
	// The whole entry: a later report of the running deployment may move
	// its commit or time.
	if old, ok := m.running[k]; ok && sameRunning(old, now) {
		return
	}
	m.running[k] = now
	fmt.Printf("running  %s %s %s (deployment %s, workspace %s)\n", k.environment, k.repository, deref(now.CommitSHA), now.DeploymentID, k.workspace)
}

func sameRunning(a, b running) bool {
	eq := func(x, y *string) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return a.DeploymentID == b.DeploymentID && eq(a.CommitSHA, b.CommitSHA) && eq(a.Branch, b.Branch) && a.DeployedAt == b.DeployedAt
}

func deref(s *string) string {
	if s == nil {
		return "<none>"
	}
	return *s
}

func (m *model) summary() map[string]any {
	run := map[string]map[string]map[string]running{}
	for k, r := range m.running {
		if run[k.workspace] == nil {
			run[k.workspace] = map[string]map[string]running{}
		}
		if run[k.workspace][k.environment] == nil {
			run[k.workspace][k.environment] = map[string]running{}
		}
		run[k.workspace][k.environment][k.repository] = r
	}
	statuses := map[string]string{}
	for id, d := range m.deployments {
		statuses[id] = d.Status
	}
	out := map[string]any{"running": run, "deployments": statuses}
	for k, v := range m.counts {
		out[k] = v
	}
	return out
}

// loadSchemas compiles every deployment-reported.vN.schema.json in dir, by version.
func loadSchemas(dir string) map[int]schema {
	paths, _ := filepath.Glob(filepath.Join(dir, "deployment-reported.v*.schema.json"))
	version := regexp.MustCompile(`\.v([0-9]+)\.schema\.json$`)
	out := map[int]schema{}
	for _, path := range paths {
		f, err := os.Open(path)
		must(err)
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		must(err)
		id := doc.(map[string]any)["$id"].(string)
		c := jsonschema.NewCompiler()
		c.AssertFormat()
		must(c.AddResource(id, doc))
		s, err := c.Compile(id)
		must(err)
		v, _ := strconv.Atoi(version.FindStringSubmatch(path)[1])
		out[v] = schema{id, s}
	}
	return out
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func headers(r *kgo.Record) map[string]string {
	h := map[string]string{}
	for _, kv := range r.Headers {
		h[kv.Key] = string(kv.Value)
	}
	return h
}

// check returns the event, or what to count ("invalid", "skipped") and why.
func check(r *kgo.Record, schemas map[int]schema) (event, string, string) {
	where := fmt.Sprintf("partition %d offset %d", r.Partition, r.Offset)
	h := headers(r)
	for _, name := range required {
		if _, ok := h[name]; !ok {
			return event{}, "invalid", fmt.Sprintf("%s: missing CloudEvents header %s", where, name)
		}
	}
	if h["ce_specversion"] != "1.0" || h["content-type"] != "application/json" {
		return event{}, "invalid", where + ": not a CloudEvents 1.0 JSON record"
	}
	m := ceType.FindStringSubmatch(h["ce_type"])
	v := -1
	if m != nil {
		v, _ = strconv.Atoi(m[1])
	}
	s, known := schemas[v]
	if !known {
		return event{}, "skipped", fmt.Sprintf("%s: unknown ce_type %s, skipped", where, h["ce_type"])
	}
	if h["ce_dataschema"] != s.id {
		return event{}, "invalid", fmt.Sprintf("%s: ce_dataschema %s is not %s", where, h["ce_dataschema"], s.id)
	}
	value, err := jsonschema.UnmarshalJSON(strings.NewReader(string(r.Value)))
	if err != nil {
		return event{}, "invalid", fmt.Sprintf("%s: value is not JSON: %v", where, err)
	}
	if err := s.schema.Validate(value); err != nil {
		return event{}, "invalid", fmt.Sprintf("%s: not a v%d event: %v", where, v, err)
	}
	var e event
	if err := json.Unmarshal(r.Value, &e); err != nil {
		return event{}, "invalid", fmt.Sprintf("%s: not a v%d event: %v", where, v, err)
	}
	if h["ce_id"] != e.EventID || h["ce_source"] != "/workspaces/"+e.WorkspaceID {
		return event{}, "invalid", where + ": headers do not match the event"
	}
	for _, at := range [][2]string{{"deployed_at", e.DeployedAt}, {"received_at", e.ReceivedAt}} {
		if _, err := parseInstant(at[1]); err != nil {
			return event{}, "invalid", fmt.Sprintf("%s: %s: %v", where, at[0], err)
		}
	}
	return e, "event", ""
}

type deadLetter struct {
	ReasonClass       string `json:"reason_class"`
	Reason            string `json:"reason"`
	OriginalTopic     string `json:"original_topic"`
	OriginalPartition int    `json:"original_partition"`
	OriginalOffset    int    `json:"original_offset"`
}

func readDeadLetter(r *kgo.Record) deadLetter {
	h := headers(r)
	p, _ := strconv.Atoi(h["dlq_original_partition"])
	o, _ := strconv.Atoi(h["dlq_original_offset"])
	d := deadLetter{h["dlq_reason_class"], h["dlq_reason"], h["dlq_original_topic"], p, o}
	fmt.Printf("dead     %s %s/%d@%d: %s\n", d.ReasonClass, d.OriginalTopic, p, o, d.Reason)
	return d
}

// endOffsets is each non-empty partition's end offset now.
func endOffsets(ctx context.Context, client *kgo.Client, topic string) map[int32]int64 {
	adm := kadm.NewClient(client)
	inTopic := func(err error) error {
		if err != nil {
			return fmt.Errorf("error: topic %s: %w", topic, err)
		}
		return nil
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	must(inTopic(err))
	ends, err := adm.ListEndOffsets(ctx, topic)
	must(inTopic(err))
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		must(inTopic(o.Err))
		if s, ok := starts.Lookup(topic, o.Partition); ok && o.Offset > s.Offset {
			out[o.Partition] = o.Offset
		}
	})
	return out
}

func main() {
	brokers := flag.String("brokers", envOr("KAFKA_BROKERS", "127.0.0.1:9092"), "bootstrap brokers, comma-separated")
	topic := flag.String("topic", "deployments.v1", "the event topic")
	group := flag.String("group", "", "the consumer group (required)")
	schemaDir := flag.String("schemas", "schemas", "the directory of deployment-reported.vN.schema.json")
	untilCaughtUp := flag.Bool("until-caught-up", false, "stop at the end offsets seen at start, and print the summary")
	dlq := flag.Bool("dlq", false, "read <topic>.dlq and print each dead letter's reason")
	flag.Parse()
	if *group == "" {
		must(fmt.Errorf("-group is required"))
	}
	read := *topic
	if *dlq {
		read += ".dlq"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(*brokers, ",")...),
		kgo.ConsumerGroup(*group),
		kgo.ConsumeTopics(read),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	must(err)
	defer client.Close()
	ends := endOffsets(ctx, client, read)
	next := map[int32]int64{}
	caughtUp := func() bool {
		for p, end := range ends {
			if next[p] < end {
				return false
			}
		}
		return true
	}

	schemas := loadSchemas(*schemaDir)
	m := &model{map[string]event{}, map[key]running{}, map[string]bool{}, map[string]int{"events": 0, "duplicates": 0, "skipped": 0, "invalid": 0}}
	var dead []deadLetter
	for ctx.Err() == nil && !(*untilCaughtUp && caughtUp()) {
		poll, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		fetches := client.PollFetches(poll)
		cancel()
		fetches.EachError(func(t string, p int32, err error) {
			if err != context.DeadlineExceeded && err != context.Canceled {
				warn("%s/%d: %v", t, p, err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			next[r.Partition] = r.Offset + 1
			if *dlq {
				dead = append(dead, readDeadLetter(r))
				return
			}
			e, what, why := check(r, schemas)
			if what == "event" {
				m.apply(e)
			} else {
				m.counts[what]++
				warn("%s", why)
			}
		})
	}
	must(client.CommitUncommittedOffsets(context.Background()))
	var out any = m.summary()
	if *dlq {
		sort.Slice(dead, func(i, j int) bool {
			a, b := dead[i], dead[j]
			return a.OriginalPartition < b.OriginalPartition || (a.OriginalPartition == b.OriginalPartition && a.OriginalOffset < b.OriginalOffset)
		})
		if dead == nil {
			dead = []deadLetter{}
		}
		out = map[string]any{"dead_letters": dead}
	}
	line, err := json.Marshal(out)
	must(err)
	fmt.Println(string(line))
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
