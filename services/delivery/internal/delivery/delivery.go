// Package delivery is the heart of the delivery service: the dispatch
// pipeline (prepare → send → record), the retry schedule arithmetic, the
// classification of failed attempts, the worker that claims due work, and
// the operations behind the gRPC API. It knows nothing of gRPC or of Redis
// wire details; those live behind the small interfaces declared here.
package delivery

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/voxscriber/webhooks/pkg/auditlog"
)

// Status is where a delivery stands.
type Status string

// Statuses.
const (
	StatusPending   Status = "pending"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusParked    Status = "parked"
	StatusCanceled  Status = "canceled"
)

// Ended reports whether the status is an end (succeeded, failed after the
// final attempt, canceled): not pending nor parked.
func (s Status) Ended() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCanceled
}

// ErrorType says why an attempt failed, in terms a customer can act on.
type ErrorType string

// Error types.
const (
	ErrorNone       ErrorType = ""
	ErrorDNS        ErrorType = "dns"
	ErrorConnect    ErrorType = "connect"
	ErrorTLS        ErrorType = "tls"
	ErrorTimeout    ErrorType = "timeout"
	ErrorHTTPStatus ErrorType = "http_status"
	ErrorBlocked    ErrorType = "blocked"
	ErrorOther      ErrorType = "other"
)

// Delivery is one event on its way to one endpoint.
type Delivery struct {
	ID         string
	EventID    string
	EndpointID string
	AccountID  string
	EventType  string
	Status     Status
	// Attempts made so far; the next attempt is number Attempts+1.
	Attempts int
	// Base is Attempts when the current round of the retry schedule began
	// (0, or the count at a resume or replay, which grants a fresh round).
	Base int
	// FirstAttempt is when the current round's first attempt started (zero
	// before it).
	FirstAttempt time.Time
	CreateTime   time.Time
	UpdateTime   time.Time
	// NextTime is when the next attempt is due (pending only).
	NextTime time.Time
	// TraceParent and TraceState are the W3C trace context of the caller
	// that scheduled the delivery: every attempt's span is its child.
	TraceParent string
	TraceState  string
	LastCode    int
	LastError   string
	Test        bool
	// Body is the request body of a test delivery (test deliveries have no
	// stored event), or of a delivery restored from history whose event
	// is no longer in Redis; empty otherwise.
	Body []byte
	// OrderingKey is set for a delivery to an endpoint ordered by key: it
	// goes only once every earlier delivery of (EndpointID, OrderingKey)
	// succeeded or failed its final attempt.
	OrderingKey string
	// Waited is how long it waited for an earlier delivery of its key
	// before it was released (ordered deliveries only).
	Waited time.Duration
	// WaitingFor is, while it waits, the event id of the delivery at the
	// head of its key's line (read by Get only).
	WaitingFor string
	// LineSeq is an ordered delivery's sequence number in its line, set
	// when the archiver moves it to history as parked work (read from the
	// line by Queue.TakeEnded) and when history gives it back: restored,
	// it rejoins its line at that place.
	LineSeq int64
	// LeaseUntil, when set on a delivery given to Queue.Schedule, creates
	// it leased to the caller until then, as a claim leases it (the
	// caller then sends it without claiming it). Not read back.
	LeaseUntil time.Time
	// Version grows with every write of the delivery over its whole life,
	// round trips through history included (pkg/history's contract): the
	// archiver deletes the Redis copy only while it is still at the
	// version archived.
	Version int64
}

// Attempt is one HTTP request to an endpoint.
type Attempt struct {
	Number     int
	Start      time.Time
	StatusCode int // 0 when no HTTP answer was received
	Latency    time.Duration
	ErrorType  ErrorType
	Error      string
	// Response is up to MaxResponseBytes of the response body.
	Response string
	// RequestHeaders are the headers sent (signatures included, secrets
	// never).
	RequestHeaders map[string]string
	TraceID        string
	SpanID         string
	URL            string
}

// Succeeded reports whether the attempt got a 2xx answer.
func (a *Attempt) Succeeded() bool { return a.ErrorType == ErrorNone && a.StatusCode/100 == 2 }

// MaxResponseBytes bounds the response excerpt kept per attempt.
const MaxResponseBytes = 4 << 10

// EndpointStatus is the registry's view of an endpoint.
type EndpointStatus int

// Endpoint statuses.
const (
	EndpointActive EndpointStatus = iota + 1
	EndpointInactive
	EndpointDisabled
)

// Target is what the sender needs to deliver to an endpoint.
type Target struct {
	AccountID  string
	EndpointID string
	URL        string
	Status     EndpointStatus
	Headers    map[string]string
	// RateLimit is the most requests per second (0: none).
	RateLimit int
	// Secrets valid now, newest first.
	Secrets []string
}

// Job is a claimed delivery: the worker holds it until LeaseUntil.
type Job struct {
	Delivery   Delivery
	LeaseUntil time.Time
	// Payload is the event's payload when whoever made the job read it
	// already (Schedule, for the deliveries it leases to this process);
	// nil: the dispatcher reads it. It is never stored with the delivery.
	Payload []byte
}

// Outcome is what the record stage writes back for a job.
type Outcome struct {
	Status Status
	// Next is when the next attempt is due (Status pending).
	Next time.Time
	// Attempt is the attempt made, nil when none was (parked, canceled,
	// deferred).
	Attempt *Attempt
	// LastError explains a terminal status reached without an attempt.
	LastError string
	Now       time.Time
	// HandoffUntil, when set on an end of an ordered delivery, asks
	// Complete to lease the next delivery of its line (the one the end
	// releases) to the caller until then and return it: the caller sends
	// it next, without a claim.
	HandoffUntil time.Time
	// Handoff is that delivery, set by the dispatcher once the outcome is
	// recorded (nil: none). Its sender must run it or release it.
	Handoff *Job
	// MarkEndpoint, set on a success that counts for its endpoint, asks
	// Complete to raise the endpoint's last-success time (the mark the
	// disable decisions of EndpointStats read) to Now first, whether or not
	// the lease is still held: an outcome is never recorded without its
	// mark, and an error writing the mark records nothing.
	MarkEndpoint bool
}

// ListQuery selects deliveries of one account for ListDeliveries.
type ListQuery struct {
	// Start and End bound the time part of the delivery's id (its event's
	// time): Start <= t < End; zero: unbounded.
	Start, End time.Time
	PageSize   int
	// PageToken is the id of the last delivery of the previous page.
	PageToken string
	// The filters ("" matches any); Match is their conjunction.
	EndpointID, EventType, EventID string
	Status                         Status
	Match                          func(*Delivery) bool
}

// Queue is the durable retry schedule.
type Queue interface {
	// Schedule creates the deliveries that do not exist yet (an upsert keyed
	// by the delivery id) and reports which were created. One created with
	// LeaseUntil set is leased to the caller (a Job with that lease and
	// Version+1); one that already existed is left as it is, unleased.
	Schedule(ctx context.Context, ds []Delivery) (created []bool, err error)
	// Exist reports which of the deliveries ids are in the live tier.
	Exist(ctx context.Context, ids []string) ([]bool, error)
	// Claim leases up to max due deliveries until leaseUntil. next is when
	// the earliest remaining item (due or leased) comes due; zero when the
	// schedule is empty.
	Claim(ctx context.Context, now, leaseUntil time.Time, max int) (jobs []Job, next time.Time, err error)
	// Complete records the outcome if the job's lease is still held and
	// reports whether it was; next is the delivery leased to the caller
	// for o.HandoffUntil (nil when none was asked for or released). With
	// o.MarkEndpoint it first marks the endpoint's success at o.Now.
	Complete(ctx context.Context, job Job, o Outcome) (recorded bool, next *Job, err error)
	// Release hands a job back, due now, if its lease is still held.
	Release(ctx context.Context, job Job, now time.Time) error
	// ReleaseAll hands several jobs back in one round trip, each due at
	// due[i], where their leases are still held.
	ReleaseAll(ctx context.Context, jobs []Job, due []time.Time) error
}

// History is the delivery history (every delivery and its attempts) behind
// the read and resend operations.
type History interface {
	// Get returns an account's delivery and its attempts, oldest first, or
	// an error wrapping apierr.ErrNotFound.
	Get(ctx context.Context, accountID, id string) (*Delivery, []Attempt, error)
	// List pages through an account's deliveries, newest first.
	List(ctx context.Context, accountID string, q ListQuery) ([]Delivery, string, error)
	// Requeue makes a delivery pending and due at now unless an attempt is
	// in flight; it reports whether it changed anything. ent (the manual
	// retry's audit entry) is written in the same Redis step as the change
	// and only with it: never a retry without its entry, no entry for a
	// retry refused.
	Requeue(ctx context.Context, accountID, id string, now time.Time, ent auditlog.Entry) (bool, error)
	// RecordAudit writes an audit entry on its own (a replay's, before the
	// replay touches any delivery).
	RecordAudit(ctx context.Context, e auditlog.Entry) error
	// RecordTest stores a finished test delivery with its single attempt.
	RecordTest(ctx context.Context, d Delivery, a Attempt) error
	// Restart makes the deliveries whose status is one of from pending,
	// due at now, with a fresh round of the retry schedule (attempt numbers
	// continue); it returns how many it restarted. Test deliveries are
	// never restarted.
	Restart(ctx context.Context, accountID string, ids []string, from []Status, now time.Time) (int, error)
	// Parked returns up to limit parked deliveries grouped by endpoint,
	// and the endpoints with parked work in history.
	Parked(ctx context.Context, limit int) ([]ParkedEndpoint, error)
	// ResumeHistory brings an endpoint's parked deliveries in history back
	// to Redis in publish order, due at now with a fresh round, and
	// returns how many.
	ResumeHistory(ctx context.Context, accountID, endpointID string, now time.Time) (int, error)
	// Find returns the ids of an account's deliveries to an endpoint
	// created at or after since whose status is one of statuses, oldest
	// first, at most limit, never a test delivery.
	Find(ctx context.Context, accountID, endpointID string, statuses []Status, since time.Time, limit int) ([]string, error)
}

// ParkedEndpoint is an endpoint's parked deliveries: IDs of those in
// Redis, or InHistory when some moved to history (ResumeHistory brings
// them back, however many).
type ParkedEndpoint struct {
	AccountID, EndpointID string
	IDs                   []string
	InHistory             bool
}

// Targets looks endpoints up in the registry. An endpoint that no longer
// exists is an error wrapping apierr.ErrNotFound.
type Targets interface {
	Target(ctx context.Context, accountID, endpointID string) (*Target, error)
}

// Events returns stored event payloads (the exact request bodies). An event
// that no longer exists is an error wrapping apierr.ErrNotFound.
type Events interface {
	Payload(ctx context.Context, eventID string) ([]byte, error)
}

// ArchivedEvents reads the payload of an event that left Redis for the
// history tier, byte for byte. An event history does not hold is an error
// wrapping apierr.ErrNotFound; history unreachable, apierr.ErrUnavailable.
type ArchivedEvents interface {
	ArchivedPayload(ctx context.Context, accountID, eventID string) ([]byte, error)
}

// EventAccounts tells which account each stored event belongs to ("" for
// an event that is not stored). Schedule checks it: a caller cannot make
// one account's event reach another account's endpoints or delivery list.
// With payloads it returns each stored event's payload from the same read
// (nil for one not stored): the deliveries Schedule starts at once send
// it without reading it again.
type EventAccounts interface {
	Accounts(ctx context.Context, eventIDs []string, payloads bool) ([]string, [][]byte, error)
}

// Clock tells the time.
type Clock interface{ Now() time.Time }

// SystemClock is the real clock.
type SystemClock struct{}

// Now implements Clock.
func (SystemClock) Now() time.Time { return time.Now() }

// Request is one webhook request to make.
type Request struct {
	URL       string
	Body      []byte
	EventID   string
	EventType string
	Attempt   int
	Time      time.Time
	Secrets   []string
	Headers   map[string]string
}

// Response is what came back (or did not).
type Response struct {
	StatusCode int
	Header     http.Header
	// Body is up to MaxResponseBytes of the response body.
	Body []byte
	// Latency is from sending the request to reading the excerpt.
	Latency time.Duration
	// RequestHeaders are the headers sent, signing secrets excluded.
	RequestHeaders map[string]string
	// Err is a transport failure (no HTTP answer).
	Err error
}

// Sender makes webhook requests. ctx carries the attempt span, whose
// context the request propagates.
type Sender interface {
	Send(ctx context.Context, r Request) Response
}

// errAborted marks a dispatch abandoned because the worker is stopping or
// its lease ran short; the job is released, not recorded.
var errAborted = errors.New("delivery: dispatch aborted")
