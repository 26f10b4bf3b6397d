package loadtest

// A drop through the waiting room (Scenario.Admission "queue"), and a drop's
// bots (Scenario.Bots), with or without the queue.
//
// With the queue the product is put with "admission":"queue". Each buyer
// joins the queue when it arrives (POST /api/v1/products/{sku}/queue, before
// T0 into the pre-queue, after it at the back of the line), polls its ticket
// (GET /api/v1/queue/{ticket}) when poll_after_ms says, orders once
// admitted with its admission token (Admission-Token) and an
// Idempotency-Key, and stops at its order, or when its ticket reads
// sold_out, ended or expired.
//
// A bot is a buyer that sends more: it has Scenario.BotIDs user ids (auth
// none lets it make them up), each of which joins in the first tenth of the
// lead, polls every Scenario.BotPoll whatever poll_after_ms says, and orders
// at once with any token it gets; after a 201 it tries the same token again
// with a new Idempotency-Key (orderd must answer 409 admission_used). Without
// the queue each of a bot's ids orders directly, from 100 ms before the
// earliest buyer's clock reads T0 (T0 - Scenario.ClockSkew), and retries
// not_started every 20 ms: the bot that sends the most requests wins, the
// measured reason for the queue.
//
// Every request carries X-Forwarded-For: each buyer's own address, one
// address per bot for all its ids, so that an orderd trusting the loopback
// as a proxy (--trusted-proxies 127.0.0.1) can apply its per-IP limit
// (--ip-rate-limit) as it would behind nginx.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	orderhttp "github.com/flashorder/flashorder/http"
)

// The admission modes of Scenario.Admission.
const (
	AdmissionOpen  = "open"
	AdmissionQueue = "queue"
)

// Defaults of a drop's bots.
const (
	DefaultBotIDs  = 5
	DefaultBotPoll = 100 * time.Millisecond
	// botRetry is how soon a bot without the queue retries not_started;
	// botEarly how long before the earliest buyer it starts ordering.
	botRetry = 20 * time.Millisecond
	botEarly = 100 * time.Millisecond
	// sampleEvery is how often the run reads orderd's queue metrics;
	// boundGrace how long committed may stay over the bound with no
	// admission used (docs/DESIGN.md, flashorder_queue_bound_exceeded_total).
	sampleEvery = 250 * time.Millisecond
	boundGrace  = 1500 * time.Millisecond
)

// Codes of the waiting room's refusals.
const (
	CodeAdmissionRequired = "admission_required"
	CodeAdmissionUsed     = "admission_used"
	CodeRateLimited       = "rate_limited"
)

// Ticket statuses.
const (
	ticketWaiting  = "waiting"
	ticketAdmitted = "admitted"
	ticketSoldOut  = "sold_out"
	ticketEnded    = "ended"
	ticketExpired  = "expired"
)

// queue steps of a user.
type qStep uint8

const (
	qJoin  qStep = iota // join the queue
	qPoll               // poll the ticket
	qOrder              // order with the token
	qReuse              // a bot: the same token again, with a new key
)

// queueUser is one user id of a drop with a queue or bots: a buyer, or one
// of a bot's ids. Only the worker running its step touches it.
type queueUser struct {
	id     string // the user id
	xff    string // X-Forwarded-For
	bot    bool
	person int32 // the buyer (a bot's ids share one)
	step   qStep

	ticket  string
	token   string
	expires time.Time // admission_expires_at: the admission's moment + the TTL
	number  int64     // admission_number: its place in the admission order
	// joinServer is the join's server_time (orderd's clock), joinAt the
	// client's time of the join's answer, since the start of the run.
	joinServer time.Time
	joinAt     time.Duration
	joined     bool
	preQueue   bool
	admitted   bool
	// heard is when (since the start) a poll first read sold_out; 0 when
	// none did.
	heard         time.Duration
	heardLag      time.Duration // how late that poll left, by orderbench's fault
	soldOutAtJoin bool
	blocked       bool // a bot id refused at the join (429)
	units         int64
}

// queueRun is the queue's and the bots' part of a drop.
type queueRun struct {
	d      *dropRun
	queue  bool // through the waiting room
	humans int  // users[:humans] are the buyers who are not bots
	bots   int
	users  []queueUser
	poll   time.Duration // bots' poll interval
	join   string        // the join's path

	joins, polls, joinErrors, pollErrors, limited atomic.Int64
	admissionUsed, admissionRequired              atomic.Int64
	orders                                        atomic.Int64 // 201s that took a unit, for the samples

	hmu      sync.Mutex
	joinHist *hdrhistogram.Histogram
	pollHist *hdrhistogram.Histogram

	smu     sync.Mutex
	samples []QueueSample
	metrics []string // problems reading /metrics
}

// newQueueRun plans the users of a drop with a queue or bots: the buyers
// who are not bots first (by arrival), then each bot's ids.
func newQueueRun(d *dropRun) *queueRun {
	r := d.r
	sc := r.cfg.Scenario
	q := &queueRun{d: d, queue: sc.Admission == AdmissionQueue, poll: sc.BotPoll,
		join: "/api/v1/products/" + r.skus[0] + "/queue", joinHist: NewHistogram(), pollHist: NewHistogram()}
	q.bots = int(math.Round(sc.Bots * float64(sc.Users)))
	q.humans = sc.Users - q.bots
	for i := range q.humans {
		q.users = append(q.users, queueUser{id: fmt.Sprintf("u%s-%d", r.runID, i), xff: ipOf(i), person: int32(i)})
	}
	for b := range q.bots {
		p := q.humans + b
		for k := range sc.BotIDs {
			q.users = append(q.users, queueUser{id: fmt.Sprintf("u%s-%d-b%d", r.runID, p, k), xff: ipOf(p), bot: true, person: int32(p)})
		}
	}
	return q
}

// ipOf is buyer i's address: 10.x.y.z.
func ipOf(i int) string {
	i++
	return fmt.Sprintf("10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255)
}

// plan returns the arrival (since the start of the run) and the state of
// each user: the buyers who are not bots as PlanDrop has them before T0
// (clocks off by up to skew), except a Scenario.LateShare of them who arrive
// after T0, evenly over Scenario.Late; the bots' ids in the first tenth of
// the lead.
func (q *queueRun) plan(rng *rand.Rand, skew time.Duration) ([]time.Duration, []dropUser) {
	sc := q.d.r.cfg.Scenario
	out := make([]time.Duration, len(q.users))
	users := make([]dropUser, len(q.users))
	late := int(math.Round(sc.LateShare * float64(q.humans)))
	early := q.humans - late
	for i, p := range PlanDrop(early, sc.Lead, skew, rng) {
		out[i] = sc.Lead + p.Arrive
		users[i].skew = p.Skew
	}
	for i := range late {
		out[early+i] = sc.Lead + time.Duration(float64(sc.Late)*(float64(i)+0.5)/float64(late))
	}
	for i := q.humans; i < len(out); i++ {
		out[i] = time.Duration(rng.Float64() * float64(sc.Lead) / 10)
	}
	return out, users
}

// handles reports whether the queue's code runs user's steps: every user
// with the queue, the bots without it.
func (q *queueRun) handles(user int32) bool {
	return q != nil && (q.queue || q.users[user].bot)
}

// step runs t's step for a user of the queue or a bot.
func (q *queueRun) step(ctx context.Context, w *worker, t dropTask) {
	d := q.d
	u := &q.users[t.user]
	if !q.queue {
		// A bot without the queue: order from botEarly before the
		// earliest buyer's clock reads T0, and again every botRetry.
		if d.users[t.user].step == stepArrive {
			d.users[t.user].step = stepOrder
			d.schedule(t.user, max(time.Since(d.r.start), d.lead-d.r.cfg.Scenario.ClockSkew-botEarly))
			return
		}
		d.order(ctx, w, t.user, &d.users[t.user], d.r.start.Add(t.due))
		return
	}
	switch u.step {
	case qJoin:
		q.doJoin(ctx, w, t.user, u)
	case qPoll:
		q.doPoll(ctx, w, t.user, u, time.Since(d.r.start)-t.due)
	case qOrder, qReuse:
		d.order(ctx, w, t.user, &d.users[t.user], d.r.start.Add(t.due))
	}
}

// placeAnswer is a ticket as the queue endpoints answer it.
type placeAnswer struct {
	Ticket             string    `json:"ticket"`
	Status             string    `json:"status"`
	Position           int       `json:"position"`
	PreQueue           bool      `json:"pre_queue"`
	PollAfterMS        int64     `json:"poll_after_ms"`
	AdmissionToken     string    `json:"admission_token"`
	AdmissionExpiresAt time.Time `json:"admission_expires_at"`
	AdmissionNumber    int64     `json:"admission_number"`
	ServerTime         time.Time `json:"server_time"`
}

// call sends m for user and decodes a 2xx answer into p; it returns the
// answer's kind and Retry-After.
func (q *queueRun) call(ctx context.Context, w *worker, m *message, p *placeAnswer, hist *hdrhistogram.Histogram) (Answer, int) {
	sent := time.Now()
	ra, _, err := w.roundTrip(ctx, w.target(), m)
	lat := time.Since(sent)
	body := w.buf.Bytes()
	a := classifyAnswer(ctx, ra.status, errorCode(body), err)
	if a.Code == CodeCancelled {
		return a, 0
	}
	q.hmu.Lock()
	RecordLatency(hist, lat)
	q.hmu.Unlock()
	if err == nil && (ra.status == http.StatusAccepted || ra.status == http.StatusOK) {
		if json.Unmarshal(body, p) != nil {
			a = Answer{Status: 0, Code: CodeTransport}
		}
	}
	return a, ra.retryAfter
}

// doJoin joins u to the queue.
func (q *queueRun) doJoin(ctx context.Context, w *worker, id int32, u *queueUser) {
	d := q.d
	var p placeAnswer
	body := `{"user_id":"` + u.id + `"}`
	a, retryAfter := q.call(ctx, w, &message{method: http.MethodPost, path: q.join, body: []byte(body), xff: u.xff}, &p, q.joinHist)
	now := time.Since(d.r.start)
	q.joins.Add(1)
	du := &d.users[id]
	switch {
	case a.Code == CodeCancelled:
		return
	case a.IsError() || a.Status >= 500:
		q.joinErrors.Add(1)
		du.failures++
		d.schedule(id, now+backoff(du.failures, retryAfter, w.rng))
		return
	case a.Status == http.StatusTooManyRequests:
		q.limited.Add(1)
		if u.bot {
			u.blocked = true // the bot moves on to its next id
			d.finish(id, endRefused)
			return
		}
		du.failures++
		d.schedule(id, now+backoff(du.failures, retryAfter, w.rng))
		return
	case a.Code == CodeSaleEnded:
		d.finish(id, endEnded)
		return
	case a.Status != http.StatusAccepted:
		w.violate("queue: join of %s answered %d %s", u.id, a.Status, a.Code)
		d.finish(id, endRefused)
		return
	}
	du.failures = 0
	u.ticket, u.joined, u.joinAt, u.joinServer, u.preQueue = p.Ticket, true, now, p.ServerTime, p.PreQueue
	if p.Status == ticketSoldOut {
		u.soldOutAtJoin = true
	}
	q.placed(ctx, w, id, u, &p, now)
}

// doPoll polls u's ticket; lag is how late the poll leaves (waiting for a
// free worker).
func (q *queueRun) doPoll(ctx context.Context, w *worker, id int32, u *queueUser, lag time.Duration) {
	d := q.d
	var p placeAnswer
	a, retryAfter := q.call(ctx, w, &message{method: http.MethodGet, path: "/api/v1/queue/" + u.ticket, xff: u.xff}, &p, q.pollHist)
	now := time.Since(d.r.start)
	q.polls.Add(1)
	du := &d.users[id]
	switch {
	case a.Code == CodeCancelled:
		return
	case a.IsError() || a.Status == http.StatusTooManyRequests:
		q.pollErrors.Add(1)
		du.failures++
		d.schedule(id, now+backoff(du.failures, retryAfter, w.rng))
		return
	case a.Status != http.StatusOK:
		w.violate("queue: poll of ticket %s (user %s) answered %d %s", u.ticket, u.id, a.Status, a.Code)
		d.finish(id, endRefused)
		return
	}
	du.failures = 0
	if p.Status == ticketSoldOut && u.heard == 0 && !u.soldOutAtJoin {
		u.heard, u.heardLag = now, max(lag, 0)
	}
	q.placed(ctx, w, id, u, &p, now)
}

// placed acts on a ticket's answer: order once admitted, poll again while
// waiting, stop otherwise.
func (q *queueRun) placed(ctx context.Context, w *worker, id int32, u *queueUser, p *placeAnswer, now time.Duration) {
	d := q.d
	switch p.Status {
	case ticketAdmitted:
		if p.AdmissionToken == "" {
			// Admitted, but the admission is used or lapsed: nothing to
			// order with.
			d.finish(id, endRefused)
			return
		}
		u.admitted, u.token, u.expires, u.number = true, p.AdmissionToken, p.AdmissionExpiresAt, p.AdmissionNumber
		u.step = qOrder
		q.d.order(ctx, w, id, &d.users[id], time.Now())
	case ticketWaiting:
		u.step = qPoll
		wait := time.Duration(p.PollAfterMS) * time.Millisecond
		if u.bot {
			wait = q.poll
		} else if wait <= 0 {
			wait = 500 * time.Millisecond
		}
		d.schedule(id, now+wait)
	case ticketSoldOut:
		d.finish(id, endSoldOut)
	case ticketEnded:
		d.finish(id, endEnded)
	default: // expired, or a status this tool does not know
		d.finish(id, endRefused)
	}
}

// afterOrder plans what a user of the queue, or a bot, does after its
// order's answer (not an error: those are retried with the same key). It
// returns false for the buyers of a drop without the queue, whom
// dropRun.order handles.
func (q *queueRun) afterOrder(w *worker, id int32, a Answer, ans *answer, now time.Duration) bool {
	if !q.handles(id) {
		return false
	}
	d := q.d
	u := &q.users[id]
	switch a.Code {
	case CodeAdmissionUsed:
		q.admissionUsed.Add(1)
	case CodeAdmissionRequired:
		q.admissionRequired.Add(1)
	}
	if !q.queue {
		// A bot without the queue.
		switch {
		case a.Status == http.StatusCreated:
			d.finish(id, endBought)
		case a.Code == CodeNotStarted:
			d.schedule(id, now+botRetry)
		default:
			d.finishRefused(id, a)
		}
		return true
	}
	if u.step == qReuse {
		// The bot's second use of its token: only 409 admission_used is
		// right; the audit catches a second order.
		if a.Code != CodeAdmissionUsed {
			w.violate("queue: the second use of ticket %s's token (user %s) answered %d %s, want 409 admission_used",
				u.ticket, u.id, a.Status, a.Code)
		}
		d.finish(id, endBought)
		return true
	}
	switch {
	case a.Status == http.StatusCreated:
		if u.bot {
			u.step = qReuse
			d.schedule(id, now)
			return true
		}
		d.finish(id, endBought)
	case a.Code == CodeNotStarted:
		wait := time.Duration(ans.retryAfter) * time.Second
		d.schedule(id, now+max(wait, 100*time.Millisecond))
	default:
		d.finishRefused(id, a)
	}
	return true
}

// finishRefused ends user id's drop after the refusal a.
func (d *dropRun) finishRefused(id int32, a Answer) {
	switch a.Code {
	case CodeSoldOut:
		d.finish(id, endSoldOut)
	case CodeLimitExceeded:
		d.finish(id, endLimited)
	case CodeSaleEnded:
		d.finish(id, endEnded)
	default:
		d.finish(id, endRefused)
	}
}

// request completes rq for user id: its address, and with the queue its
// admission token and ticket.
func (q *queueRun) request(id int32, rq *request) {
	u := &q.users[id]
	rq.user, rq.xff = u.id, u.xff
	if q.queue {
		rq.admission, rq.ticket = u.token, u.ticket
	}
}

// sample reads orderd's queue metrics every sampleEvery until done closes,
// and once more after.
func (q *queueRun) sample(ctx context.Context, admin *orderhttp.Client, done <-chan struct{}) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		q.sampleOnce(ctx, admin)
		select {
		case <-t.C:
		case <-done:
			q.sampleOnce(ctx, admin)
			return
		case <-ctx.Done():
			return
		}
	}
}

// QueueSample is one reading of orderd's queue metrics (the queue of the
// drop's product) beside the client's counts.
type QueueSample struct {
	// At is in seconds since the start of the run.
	At          float64 `json:"at"`
	Waiting     float64 `json:"waiting"`
	Outstanding float64 `json:"outstanding"`
	Used        float64 `json:"used"`
	Committed   float64 `json:"committed"`
	Bound       float64 `json:"bound"`
	Admitted    float64 `json:"admitted_total"`
	Exceeded    float64 `json:"bound_exceeded_total"`
	// Found reports that the metrics named the queue (orderd has not
	// served it before its first join).
	Found bool `json:"found"`
	// Orders and Joins are the client's 201s and joins so far.
	Orders int64 `json:"orders"`
	Joins  int64 `json:"joins"`
}

// sampleOnce reads /metrics once into a QueueSample.
func (q *queueRun) sampleOnce(ctx context.Context, admin *orderhttp.Client) {
	s := QueueSample{At: time.Since(q.d.r.start).Seconds(), Orders: q.orders.Load(), Joins: q.joins.Load()}
	err := q.readMetrics(ctx, admin, &s)
	q.smu.Lock()
	defer q.smu.Unlock()
	if err != nil {
		if len(q.metrics) < 5 {
			q.metrics = append(q.metrics, err.Error())
		}
		return
	}
	q.samples = append(q.samples, s)
}

// readMetrics parses the flashorder_queue_* lines of the drop's queue.
func (q *queueRun) readMetrics(ctx context.Context, admin *orderhttp.Client, s *QueueSample) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin.BaseURL+"/metrics", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+admin.AdminToken)
	resp, err := admin.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("read /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("read /metrics: %d", resp.StatusCode)
	}
	label := `{queue="sku:` + q.d.r.skus[0] + `"}`
	fields := map[string]*float64{
		"flashorder_queue_waiting": &s.Waiting, "flashorder_queue_admissions_outstanding": &s.Outstanding,
		"flashorder_queue_admissions_used": &s.Used, "flashorder_queue_committed": &s.Committed,
		"flashorder_queue_bound": &s.Bound, "flashorder_queue_admitted_total": &s.Admitted,
		"flashorder_queue_bound_exceeded_total": &s.Exceeded,
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "flashorder_queue_") {
			continue
		}
		name, rest, ok := strings.Cut(line, label+" ")
		if !ok {
			continue
		}
		if f := fields[name]; f != nil {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				*f = v
				s.Found = true
			}
		}
	}
	return sc.Err()
}

// QueueResult is what a drop through the waiting room, or with bots,
// measured.
type QueueResult struct {
	// Admission is "queue" or "open" (the bots without the queue).
	Admission string `json:"admission"`
	// Buyers counts the buyers (a bot is one); Bots how many of them are
	// bots, each with BotIDs user ids; LateJoiners the buyers who are not
	// bots arriving after T0.
	Buyers      int `json:"buyers"`
	Bots        int `json:"bots"`
	BotIDs      int `json:"bot_ids"`
	LateJoiners int `json:"late_joiners"`
	// Joins and Polls count the queue's requests; JoinErrors and
	// PollErrors the 5xx and transport failures among them; RateLimited
	// the joins answered 429; BlockedBotIDs the bots' ids refused a place.
	Joins         int64       `json:"joins"`
	Polls         int64       `json:"polls"`
	JoinErrors    int64       `json:"join_errors"`
	PollErrors    int64       `json:"poll_errors"`
	RateLimited   int64       `json:"rate_limited"`
	BlockedBotIDs int         `json:"blocked_bot_ids"`
	JoinLatency   Percentiles `json:"join_latency"`
	PollLatency   Percentiles `json:"poll_latency"`
	// Tickets counts the tickets given, PreQueue those given before T0;
	// Admitted those that read admitted with a token.
	Tickets  int `json:"tickets"`
	PreQueue int `json:"pre_queue"`
	Admitted int `json:"admitted"`
	// AdmissionUsed counts the 409 admission_used answers (the bots'
	// second use of a token: expected refusals), AdmissionRequired the 403s.
	AdmissionUsed     int64 `json:"admission_used"`
	AdmissionRequired int64 `json:"admission_required"`

	// TauAfterT0 is Kendall's tau-b between the order in which the buyers
	// who joined after T0 joined (the join's server_time) and the order in
	// which they were admitted (admission_number, the queue's own count of
	// its admissions; admission_expires_at when orderd gives no number,
	// where one round's admissions tie), over the TauN of them admitted;
	// nil when fewer than two were. AdmitOrder says which it used:
	// "number" or "round".
	TauAfterT0 *float64 `json:"tau_after_t0,omitempty"`
	TauN       int      `json:"tau_n"`
	AdmitOrder string   `json:"admit_order,omitempty"`
	// GammaAfterT0 is Goodman and Kruskal's gamma of the same: tied pairs
	// left out, (C-D)/(C+D).
	GammaAfterT0 *float64 `json:"gamma_after_t0,omitempty"`
	// TauByRoundAfterT0 is tau-b against the admission rounds' moments
	// (admission_expires_at) even when numbers are known: what a client
	// that sees only when it was admitted can measure.
	TauByRoundAfterT0 *float64 `json:"tau_by_round_after_t0,omitempty"`
	// PreQueueTest is the chi-square test of independence between the
	// pre-queue's join times (PreQueueRows groups) and its admission
	// order (groups of admission moments, and never admitted): a uniform
	// shuffle makes them independent.
	PreQueueTest *ChiSquare `json:"pre_queue_test,omitempty"`

	// Units is the units the client's 201s took, BotUnits the bots' share
	// of them; BotUnitShare = BotUnits/Units, BotBuyerShare = Bots/Buyers,
	// BotRatio their quotient (1: the bots got their share, no more).
	Units         int64   `json:"units"`
	BotUnits      int64   `json:"bot_units"`
	BotUnitShare  float64 `json:"bot_unit_share"`
	BotBuyerShare float64 `json:"bot_buyer_share"`
	BotRatio      float64 `json:"bot_ratio"`
	// EarlyUnits is the units of the buyers who joined before T0 (every
	// bot does: they join early), EarlyBuyers how many such buyers there
	// were; BotEarlyRatio is the bots' share of those units over their
	// share of those buyers: what the bots got against the buyers who
	// arrived when they did (the later ones come behind the whole
	// pre-queue, bots or not, by design).
	EarlyUnits    int64   `json:"early_units"`
	EarlyBuyers   int     `json:"early_buyers"`
	BotEarlyRatio float64 `json:"bot_early_ratio"`

	// SellOut is when the client saw the last unit go (the 201 that took
	// it), in seconds since the start of the run; 0 when it did not.
	SellOut float64 `json:"sell_out"`
	// ToldSoldOut counts the waiting tickets whose poll read sold_out,
	// SoldOutAtJoin those that joined after it; NotifyMaxMs and
	// NotifyP99Ms are the time from SellOut to each poll that first read
	// sold_out (0 when the answer came before the client saw the last
	// 201).
	ToldSoldOut   int     `json:"told_sold_out"`
	SoldOutAtJoin int     `json:"sold_out_at_join"`
	NotifyMaxMs   float64 `json:"notify_max_ms"`
	NotifyP99Ms   float64 `json:"notify_p99_ms"`
	// NetMaxMs and NetP99Ms are the same less how late each of those polls
	// left orderbench (its workers all busy): what a buyer polling on time
	// would have seen.
	NetMaxMs float64 `json:"notify_net_max_ms"`
	NetP99Ms float64 `json:"notify_net_p99_ms"`

	Samples []QueueSample `json:"samples,omitempty"`
	// MetricsErrors lists problems reading /metrics.
	MetricsErrors []string `json:"metrics_errors,omitempty"`
}

// PreQueueRows and PreQueueCols size the pre-queue's chi-square table.
const (
	PreQueueRows = 5
	PreQueueCols = 4
)

// result sums the queue's and the bots' part up once the drop is over.
func (q *queueRun) result() *QueueResult {
	r := q.d.r
	sc := r.cfg.Scenario
	res := &QueueResult{Admission: AdmissionOpen, Buyers: sc.Users, Bots: q.bots, BotIDs: sc.BotIDs,
		LateJoiners: int(math.Round(sc.LateShare * float64(q.humans))),
		Joins:       q.joins.Load(), Polls: q.polls.Load(), JoinErrors: q.joinErrors.Load(), PollErrors: q.pollErrors.Load(),
		RateLimited: q.limited.Load(), AdmissionUsed: q.admissionUsed.Load(), AdmissionRequired: q.admissionRequired.Load()}
	if q.queue {
		res.Admission = AdmissionQueue
	}
	q.hmu.Lock()
	res.JoinLatency, res.PollLatency = PercentilesOf(q.joinHist), PercentilesOf(q.pollHist)
	q.hmu.Unlock()
	t0 := q.d.startsAt
	numbered := true
	for i := range q.users {
		if u := &q.users[i]; u.admitted && u.number <= 0 {
			numbered = false
		}
	}
	var lateJoin, lateAdmit, lateRound, preJoin, preAdmit []float64
	earlyHumans := map[int32]bool{}
	var earlyBotUnits int64
	for i := range q.users {
		u := &q.users[i]
		res.Units += u.units
		if u.preQueue {
			res.EarlyUnits += u.units
			if u.bot {
				earlyBotUnits += u.units
			} else {
				earlyHumans[u.person] = true
			}
		}
		if u.bot {
			res.BotUnits += u.units
			if u.blocked {
				res.BlockedBotIDs++
			}
		}
		if !u.joined {
			continue
		}
		res.Tickets++
		if u.admitted {
			res.Admitted++
		}
		admit, round := math.Inf(1), math.Inf(1)
		if u.admitted {
			admit, round = float64(u.expires.UnixNano()), float64(u.expires.UnixNano())
			if numbered {
				admit = float64(u.number)
			}
		}
		switch {
		case u.preQueue:
			res.PreQueue++
			preJoin = append(preJoin, float64(u.joinServer.UnixNano()))
			preAdmit = append(preAdmit, admit)
		case !u.joinServer.Before(t0) && u.admitted:
			lateJoin = append(lateJoin, float64(u.joinServer.UnixNano()))
			lateAdmit = append(lateAdmit, admit)
			lateRound = append(lateRound, round)
		}
	}
	if res.Buyers > 0 {
		res.BotBuyerShare = float64(res.Bots) / float64(res.Buyers)
	}
	if res.Units > 0 {
		res.BotUnitShare = float64(res.BotUnits) / float64(res.Units)
	}
	if res.BotBuyerShare > 0 {
		res.BotRatio = res.BotUnitShare / res.BotBuyerShare
	}
	res.EarlyBuyers = len(earlyHumans) + q.bots
	if res.EarlyUnits > 0 && q.bots > 0 {
		res.BotEarlyRatio = (float64(earlyBotUnits) / float64(res.EarlyUnits)) / (float64(q.bots) / float64(res.EarlyBuyers))
	}
	res.TauN = len(lateJoin)
	res.AdmitOrder = "round"
	if numbered {
		res.AdmitOrder = "number"
	}
	if tau := KendallTauB(lateJoin, lateAdmit); !math.IsNaN(tau) {
		res.TauAfterT0 = &tau
	}
	if tau := KendallTauB(lateJoin, lateRound); !math.IsNaN(tau) {
		res.TauByRoundAfterT0 = &tau
	}
	if g := GoodmanKruskalGamma(lateJoin, lateAdmit); !math.IsNaN(g) {
		res.GammaAfterT0 = &g
	}
	if len(preJoin) >= PreQueueRows {
		cs := ChiSquareTest(OrderTable(preJoin, preAdmit, PreQueueRows, PreQueueCols))
		res.PreQueueTest = &cs
	}
	if so := r.soldOut(); len(so) > 0 {
		res.SellOut = so[0].At
		var delays, net []float64
		for i := range q.users {
			u := &q.users[i]
			if u.soldOutAtJoin {
				res.SoldOutAtJoin++
			}
			if u.heard > 0 {
				res.ToldSoldOut++
				delays = append(delays, max(0, u.heard.Seconds()-res.SellOut)*1000)
				net = append(net, max(0, (u.heard-u.heardLag).Seconds()-res.SellOut)*1000)
			}
		}
		res.NotifyMaxMs, res.NotifyP99Ms = maxAndP99(delays)
		res.NetMaxMs, res.NetP99Ms = maxAndP99(net)
	}
	q.smu.Lock()
	res.Samples, res.MetricsErrors = q.samples, q.metrics
	q.smu.Unlock()
	return res
}

// sameRound reports whether two readings of the queue's gauges may be of
// one admission round: every gauge alike.
func sameRound(a, b *QueueSample) bool {
	return a.Waiting == b.Waiting && a.Outstanding == b.Outstanding && a.Used == b.Used && a.Committed == b.Committed && a.Bound == b.Bound
}

// maxAndP99 returns the largest value of v and its 99th percentile (the
// nearest rank); 0, 0 when v is empty. It sorts v.
func maxAndP99(v []float64) (float64, float64) {
	if len(v) == 0 {
		return 0, 0
	}
	slices.Sort(v)
	return v[len(v)-1], v[max(0, int(math.Ceil(0.99*float64(len(v))))-1)]
}

// QueueAudit is the waiting room's part of the audit.
type QueueAudit struct {
	// TokenOrders counts the distinct orders that came with an admission
	// token; TokensReused the tickets whose token led to more than one.
	TokenOrders  int `json:"token_orders"`
	TokensReused int `json:"tokens_reused"`
	// WithoutToken counts the 201s for the queue product that came without
	// a token.
	WithoutToken int `json:"without_token"`
	// AdmissionUsed counts the expected 409 admission_used refusals.
	AdmissionUsed int64 `json:"admission_used"`
	// Samples counts the readings of orderd's queue metrics, OverBound
	// those with committed > bound; BoundExceeded is
	// flashorder_queue_bound_exceeded_total at the end (-1: not read).
	// OverBound counts the readings with committed > bound.
	// OverBoundConfirmed counts the times committed stayed over the bound
	// for longer than 1.5 s with no admission used: a violation (shorter
	// may be orders counted twice between their commit and their use).
	Samples            int     `json:"samples"`
	OverBound          int     `json:"over_bound"`
	OverBoundConfirmed int     `json:"over_bound_confirmed"`
	MaxCommitted       float64 `json:"max_committed"`
	Bound              float64 `json:"bound"`
	BoundExceeded      float64 `json:"bound_exceeded"`
}

// audit checks the waiting room's guarantees against the 201s and the
// metrics samples.
func (q *queueRun) audit(byID map[string]record, v *violations) *QueueAudit {
	qa := &QueueAudit{AdmissionUsed: q.admissionUsed.Load(), BoundExceeded: -1}
	perTicket := map[string]string{}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		rec := byID[id]
		if rec.Ticket == "" {
			qa.WithoutToken++
			v.add("order without a token", "order %s (user %s) for the queue product %s was made without an admission token",
				id, rec.User, q.d.r.skus[0])
			continue
		}
		qa.TokenOrders++
		if prev, ok := perTicket[rec.Ticket]; ok && prev != id {
			qa.TokensReused++
			v.add("token used twice", "the admission token of ticket %s made order %s and order %s", rec.Ticket, prev, id)
			continue
		}
		perTicket[rec.Ticket] = id
	}
	q.smu.Lock()
	samples := q.samples
	q.smu.Unlock()
	// committed is read by an admission round: an order between its commit
	// and its admission's use (within the use's 1 s timeout) counts twice in
	// it (docs/DESIGN.md), so readings over the bound are a violation only
	// when they last longer than boundGrace with no admission used
	// meanwhile, the design's rule for flashorder_queue_bound_exceeded_total.
	// The gauges change only when a round ends (a stale or failed round
	// leaves them), so two readings alike may be one round: the period
	// counts only between readings of two rounds.
	var over *QueueSample // the first reading of the current run over the bound
	for i := range samples {
		s := &samples[i]
		if !s.Found {
			continue
		}
		qa.Samples++
		qa.MaxCommitted = max(qa.MaxCommitted, s.Committed)
		qa.Bound = s.Bound
		qa.BoundExceeded = s.Exceeded
		if s.Committed <= s.Bound {
			over = nil
			continue
		}
		qa.OverBound++
		switch {
		case over == nil || over.Used != s.Used:
			over = s
		case time.Duration((s.At-over.At)*float64(time.Second)) > boundGrace && !sameRound(over, s):
			qa.OverBoundConfirmed++
			v.add("admission bound", "from %.2fs to %.2fs orderd's metrics read committed %g to %g > bound %g, no admission used meanwhile",
				over.At, s.At, over.Committed, s.Committed, s.Bound)
			over = s // the next violation is the next grace period over
		}
	}
	switch {
	case qa.Samples == 0:
		v.add("admission bound", "orderd's /metrics never showed the queue sku:%s: the bound could not be checked", q.d.r.skus[0])
	case qa.BoundExceeded != 0:
		v.add("admission bound", "flashorder_queue_bound_exceeded_total is %g at the end, want 0", qa.BoundExceeded)
	}
	return qa
}
