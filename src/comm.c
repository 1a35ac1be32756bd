/* comm.c - MPI start-up, the agreed verdict, allreduce, replica checks.
 *
 * Every collective of a run waits through dt__comm_wait(): it polls the requests
 * instead of blocking in MPI_Wait, so that it can give up. A rank that
 * stops responding (SIGSTOP, a hung file system, a dead NIC) would
 * otherwise keep every other rank spinning in the collective until the
 * batch system's time limit; after comm.timeout_s each waiting rank says
 * which step and which exchange hung and the job ends with DT_ETIMEOUT. The
 * same loop notices a launcher that was killed (mpirun SIGKILLed by a time
 * limit): the ranks then leave instead of running on as orphans. */
#include "dtrain/comm.h"

#include <mpi.h>

#include "comm_internal.h"
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void mpi_abort_hook(void) { MPI_Abort(MPI_COMM_WORLD, 1); }

/* ---- waiting with a deadline -------------------------------------------- */

static struct {
    double timeout_s; /* 0: wait forever */
    long step;        /* named in the message */
    int rank;
    pid_t launcher;   /* our parent at start-up, when a launcher started us */
} watchdog;

void dt_comm_set_timeout(double seconds) { watchdog.timeout_s = seconds > 0 ? seconds : 0; }
void dt_comm_set_step(long step) { watchdog.step = step; }

static bool launcher_gone(void)
{
    return watchdog.launcher > 1 && getppid() != watchdog.launcher;
}

static _Noreturn void leave_orphaned(void)
{
    fprintf(stderr, "dtrain: rank %d: the launcher (pid %d) is gone; exiting\n", watchdog.rank,
            (int)watchdog.launcher);
    _exit(DT_EINTERNAL);
}

void dt_comm_exit_if_orphaned(void)
{
    if (launcher_gone()) leave_orphaned();
}

static _Noreturn void watchdog_expired(const char *what)
{
    fprintf(stderr,
            "dtrain: rank %d: step %ld: %s did not complete within comm.timeout_s = %g s (a "
            "rank stopped responding); ending the job with status %d; continue with --resume "
            "latest\n",
            watchdog.rank, watchdog.step, what, watchdog.timeout_s, (int)DT_ETIMEOUT);
    fflush(stderr);
    /* The other live ranks reach their own deadline within moments (they
     * entered the same collective); give them that long to say so before
     * the abort takes the job down. */
    sleep(1);
    MPI_Abort(MPI_COMM_WORLD, DT_ETIMEOUT);
    _exit(DT_ETIMEOUT); /* not reached */
}

static bool watching(void)
{
#ifdef DTRAIN_SMPI
    return false;
#endif
    return watchdog.timeout_s > 0;
}

/* Complete n requests, or end the job when the deadline passes. The clock
 * and the parent are read every 64 polls (about a microsecond each), so
 * the watchdog costs nothing next to the collective itself. */
void dt__comm_wait(int n, MPI_Request *req, const char *what)
{
    /* Unwatched (and under SMPI, whose simulated clock advances per
     * MPI_Test call): block. */
    if (!watching()) {
        MPI_Waitall(n, req, MPI_STATUSES_IGNORE);
        return;
    }
    const double deadline = MPI_Wtime() + watchdog.timeout_s;
    for (unsigned polls = 1;; polls++) {
        int done = 0;
        MPI_Testall(n, req, &done, MPI_STATUSES_IGNORE);
        if (done) return;
        if (polls % 64) continue;
        if (MPI_Wtime() > deadline) watchdog_expired(what);
        if (launcher_gone()) leave_orphaned();
    }
}

dt_status dt_comm_init(int *argc, char ***argv, dt_comm *c)
{
    int provided;
    memset(c, 0, sizeof *c);
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return DT_EINTERNAL;
    /* Errors in MPI calls are bugs or dead peers: abort the job rather than
     * return codes nobody can act on (the default, stated explicitly). */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->world);

    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &c->local_rank);
    MPI_Comm_size(node, &c->local_size);
    MPI_Comm_free(&node);
    /* nodes = number of ranks that are local rank 0 */
    int leader = c->local_rank == 0;
    MPI_Allreduce(&leader, &c->nodes, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);

    dt_set_log_rank(c->rank);
    dt_set_abort_hook(mpi_abort_hook);
    watchdog.rank = c->rank;
    /* Started by mpirun (or srun with Open MPI's PMIx): our parent is the
     * launcher or its daemon. A singleton run keeps no such tie, so that
     * `nohup dtrain ... &` survives its shell. */
    if (getenv("OMPI_COMM_WORLD_SIZE") && getppid() > 1) watchdog.launcher = getppid();
    return DT_OK;
}

void dt_comm_finalize(void)
{
    int done = 0;
    MPI_Finalized(&done);
    if (!done) MPI_Finalize();
}

dt_status dt_comm_agree(const dt_comm *c, dt_status local, dt_error *err)
{
    /* Lowest failing rank wins: a MIN over (failed ? rank : world). */
    int mine = local != DT_OK ? c->rank : c->world, first;
    MPI_Request req;
    MPI_Iallreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD, &req);
    dt__comm_wait(1, &req, "the agreement on a verdict");
    if (first == c->world) return DT_OK;
    struct {
        int code;
        char msg[DT_ERRMSG_MAX];
    } verdict = {0};
    if (c->rank == first) {
        verdict.code = (int)local;
        memcpy(verdict.msg, err->msg, sizeof verdict.msg);
    }
    MPI_Ibcast(&verdict, (int)sizeof verdict, MPI_BYTE, first, MPI_COMM_WORLD, &req);
    dt__comm_wait(1, &req, "the agreement on a verdict");
    err->code = (dt_status)verdict.code;
    memcpy(err->msg, verdict.msg, sizeof err->msg);
    err->msg[sizeof err->msg - 1] = 0;
    return err->code;
}

/* MPI counts are int: split very large buffers. */
static void allreduce_chunks(void *buf, size_t n, MPI_Datatype type, size_t elem,
                             const char *what)
{
    const size_t chunk = (size_t)1 << 30;
    for (size_t off = 0; off < n; off += chunk) {
        size_t count = DT_MIN(chunk, n - off);
        void *part = (char *)buf + off * elem;
        if (!watching()) { /* Open MPI's tuned blocking algorithms */
            MPI_Allreduce(MPI_IN_PLACE, part, (int)count, type, MPI_SUM, MPI_COMM_WORLD);
            continue;
        }
        MPI_Request req;
        MPI_Iallreduce(MPI_IN_PLACE, part, (int)count, type, MPI_SUM, MPI_COMM_WORLD, &req);
        dt__comm_wait(1, &req, what);
    }
}

void dt_comm_allreduce_sum(float *buf, size_t n)
{
    allreduce_chunks(buf, n, MPI_FLOAT, sizeof(float), "the gradient allreduce");
}

void dt_comm_allreduce_sum_d(double *buf, size_t n)
{
    allreduce_chunks(buf, n, MPI_DOUBLE, sizeof(double), "an allreduce of sums");
}

void dt_comm_bcast(void *buf, size_t bytes, int root)
{
    const size_t chunk = (size_t)1 << 30;
    for (size_t off = 0; off < bytes; off += chunk) {
        MPI_Request req;
        MPI_Ibcast((char *)buf + off, (int)DT_MIN(chunk, bytes - off), MPI_BYTE, root,
                   MPI_COMM_WORLD, &req);
        dt__comm_wait(1, &req, "a broadcast");
    }
}

int dt_comm_all_equal_u64(uint64_t value)
{
    uint64_t mm[2] = {value, ~value}, out[2];
    /* max of v and max of ~v (= ~min v) in one call */
    MPI_Request req;
    MPI_Iallreduce(mm, out, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD, &req);
    dt__comm_wait(1, &req, "the replica check");
    return out[0] == ~out[1];
}

/* ---- bucketed gradient allreduce ------------------------------------------ */

struct dt_grad_sync {
    size_t n;             /* floats in the arena */
    int overlap;
    int n_buckets;        /* bucket k covers [lo[k], hi[k]), k = 0 at the arena's end */
    size_t *lo, *hi;
    MPI_Request *req;
    int started;          /* buckets 0..started-1 are in flight */
    size_t ready_from;    /* [ready_from, n) is final */
    float *send, *recv;
    double ready_seconds;
    int alone; /* a world of one rank: nothing to reduce */
};

dt_status dt_grad_sync_create(size_t n, size_t bucket_floats, int overlap, dt_grad_sync **out,
                              dt_error *err)
{
    dt_grad_sync *s = dt_calloc(1, sizeof *s);
    if (!s) return dt_fail(err, DT_EINTERNAL, "out of memory");
    s->n = n;
    int world;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    s->alone = world == 1;
    if (s->alone) overlap = 0;
#ifdef DTRAIN_SMPI
    /* SMPI's MPI_Iallreduce is a naive all-to-all whose simulated time is
     * wrong (quadratic): simulated runs always take the blocking path. */
    overlap = 0;
#endif
    s->overlap = overlap;
    if (bucket_floats < 1024) bucket_floats = 1024;     /* latency-bound below */
    if (bucket_floats > ((size_t)1 << 30)) bucket_floats = (size_t)1 << 30; /* int counts */
    s->n_buckets = overlap ? (int)((n + bucket_floats - 1) / bucket_floats) : 0;
    if (overlap && s->n_buckets < 1) s->n_buckets = 1;
    if (overlap) {
        s->lo = dt_calloc((size_t)s->n_buckets, sizeof *s->lo);
        s->hi = dt_calloc((size_t)s->n_buckets, sizeof *s->hi);
        s->req = dt_calloc((size_t)s->n_buckets, sizeof *s->req);
        s->recv = dt_alloc_aligned(DT_MAX(n, 1) * sizeof(float));
        if (!s->lo || !s->hi || !s->req || !s->recv) {
            dt_grad_sync_free(s);
            return dt_fail(err, DT_EINTERNAL, "out of memory");
        }
        for (int k = 0; k < s->n_buckets; k++) {
            s->hi[k] = n - (size_t)k * bucket_floats;
            s->lo[k] = s->hi[k] > bucket_floats ? s->hi[k] - bucket_floats : 0;
            s->req[k] = MPI_REQUEST_NULL;
        }
    }
    *out = s;
    return DT_OK;
}

void dt_grad_sync_free(dt_grad_sync *s)
{
    if (!s) return;
    dt_free(s->lo);
    dt_free(s->hi);
    dt_free(s->req);
    dt_free(s->recv);
    dt_free(s);
}

void dt_grad_sync_begin(dt_grad_sync *s, float *send)
{
    s->send = send;
    s->started = 0;
    s->ready_from = s->n;
    s->ready_seconds = 0;
}

static void start_ready_buckets(dt_grad_sync *s)
{
    while (s->started < s->n_buckets && s->lo[s->started] >= s->ready_from) {
        int k = s->started++;
        MPI_Iallreduce(s->send + s->lo[k], s->recv + s->lo[k], (int)(s->hi[k] - s->lo[k]),
                       MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &s->req[k]);
    }
}

void dt_grad_sync_ready(void *sync, size_t offset, size_t count)
{
    dt_grad_sync *s = sync;
    if (!s->overlap) return;
    double t0 = MPI_Wtime();
    /* Ranges come in from the end; anything else only delays the start. */
    if (offset + count >= s->ready_from && offset < s->ready_from) s->ready_from = offset;
    start_ready_buckets(s);
    /* Open MPI progresses non-blocking collectives only inside MPI calls:
     * give the ones in flight a push at every layer boundary. */
    if (s->started > 0) {
        int done;
        MPI_Testall(s->started, s->req, &done, MPI_STATUSES_IGNORE);
    }
    s->ready_seconds += MPI_Wtime() - t0;
}

float *dt_grad_sync_finish(dt_grad_sync *s)
{
    if (s->alone) return s->send; /* one rank: the sum is the arena itself */
    if (!s->overlap) {
        dt_comm_allreduce_sum(s->send, s->n);
        return s->send;
    }
    s->ready_from = 0;
    start_ready_buckets(s);
    dt__comm_wait(s->n_buckets, s->req, "the gradient allreduce");
    return s->recv;
}

double dt_grad_sync_ready_seconds(const dt_grad_sync *s) { return s->ready_seconds; }
int dt_grad_sync_buckets(const dt_grad_sync *s) { return s->overlap ? s->n_buckets : 1; }

double dt_comm_time(void) { return MPI_Wtime(); }
