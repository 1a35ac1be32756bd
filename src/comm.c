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

#ifndef DTRAIN_SMPI /* SMPI's Open MPI emulation has no libnbc to tune */
/* The world size the launcher announces before MPI starts (mpirun, srun,
 * a PMI), or 0 when none does. */
static long announced_world(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return strtol(v, NULL, 10);
    }
    return 0;
}
#endif

/* Open MPI's non-blocking allreduce (coll/libnbc, which every exchange
 * of dtrain uses, for its watchdog) runs on fewer than 4 ranks, or in
 * place (as dtrain's flat one is), as a binomial reduce then broadcast:
 * rounds that each move the whole range, one after the other. Its
 * reduce-scatter + allgather (Rabenseifner) moves half of it each way at
 * once: the MLP's 1.08 MB takes 0.18-0.20 ms instead of 0.38-0.52 on 2
 * ranks of one node, 0.48-0.56 instead of 0.65-0.92 on 4
 * (launch/results/libnbc-allreduce.md). So on 2 and 4 ranks dtrain asks
 * for it before MPI starts, unless the user chose an algorithm. Not
 * otherwise: forced, libnbc falls back to a ring of 2(P-1) rounds for
 * ranges shorter than P (the loss sum, a verdict: 0.007 -> 0.013 ms on 4
 * ranks), and on 3 ranks it was no faster for the gradients; larger
 * worlds could not be measured here (from 4 nodes on, the node-aware
 * reduction's inter-node allreduce, out of place, gets that algorithm by
 * libnbc's own choice). */
static void choose_nonblocking_allreduce(void)
{
#ifndef DTRAIN_SMPI
    const long world = announced_world();
    if (world == 2 || world == 4)
        setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "3", 0);
#endif
}

dt_status dt_comm_init(int *argc, char ***argv, dt_comm *c)
{
    int provided;
    memset(c, 0, sizeof *c);
    choose_nonblocking_allreduce();
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
#ifdef DTRAIN_SMPI
    if (dt__simclock_init(c->rank) != 0) return DT_ECONFIG;
#endif

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

/* The collectives of agreement, broadcast and checks. Watched, they are
 * nonblocking so the deadline can be read while they run; unwatched, the
 * blocking call, which takes the MPI library's tuned algorithm. Under
 * SMPI (never watched) that matters beyond speed: SimGrid 3.32 runs every
 * nonblocking collective as all-to-all point to point, P (P - 1)
 * simultaneous flows whose max-min sharing it re-solves at each event:
 * five verdicts at start-up took 36 s of real time at P = 128 (3 s at 64). */
static void allreduce_watched(const void *send, void *recv, int count, MPI_Datatype type, MPI_Op op,
                              const char *what)
{
    if (!watching()) {
        MPI_Allreduce(send, recv, count, type, op, MPI_COMM_WORLD);
        return;
    }
    MPI_Request req;
    MPI_Iallreduce(send, recv, count, type, op, MPI_COMM_WORLD, &req);
    dt__comm_wait(1, &req, what);
}

static void bcast_watched(void *buf, int count, MPI_Datatype type, int root, const char *what)
{
    if (!watching()) {
        MPI_Bcast(buf, count, type, root, MPI_COMM_WORLD);
        return;
    }
    MPI_Request req;
    MPI_Ibcast(buf, count, type, root, MPI_COMM_WORLD, &req);
    dt__comm_wait(1, &req, what);
}

dt_status dt_comm_agree(const dt_comm *c, dt_status local, dt_error *err)
{
    /* Lowest failing rank wins: a MIN over (failed ? rank : world). */
    int mine = local != DT_OK ? c->rank : c->world, first;
    allreduce_watched(&mine, &first, 1, MPI_INT, MPI_MIN, "the agreement on a verdict");
    if (first == c->world) return DT_OK;
    struct {
        int code;
        char msg[DT_ERRMSG_MAX];
    } verdict = {0};
    if (c->rank == first) {
        verdict.code = (int)local;
        memcpy(verdict.msg, err->msg, sizeof verdict.msg);
    }
    bcast_watched(&verdict, (int)sizeof verdict, MPI_BYTE, first, "the agreement on a verdict");
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
        allreduce_watched(MPI_IN_PLACE, (char *)buf + off * elem, (int)count, type, MPI_SUM, what);
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
        bcast_watched((char *)buf + off, (int)DT_MIN(chunk, bytes - off), MPI_BYTE, root,
                      "a broadcast");
    }
}

int dt_comm_all_equal_u64(uint64_t value)
{
    uint64_t mm[2] = {value, ~value}, out[2];
    /* max of v and max of ~v (= ~min v) in one call */
    allreduce_watched(mm, out, 2, MPI_UINT64_T, MPI_MAX, "the replica check");
    return out[0] == ~out[1];
}

/* Under SMPI a reading of the clock ends a stretch of compute (simclock.h):
 * the phase it closes is charged before the clock is read. */
double dt_comm_time(void) { return MPI_Wtime(); }

const char *dt_comm_mpi_library(void)
{
    /* One of the few MPI calls allowed outside MPI_Init/Finalize, so
     * --version works wherever the binary starts. Open MPI returns several
     * lines; the first names the library and its version. */
    static char line[MPI_MAX_LIBRARY_VERSION_STRING];
    if (line[0]) return line;
    int len = 0;
    if (MPI_Get_library_version(line, &len) != MPI_SUCCESS || len <= 0) {
        memcpy(line, "unknown", sizeof "unknown");
        return line;
    }
    if (len >= (int)sizeof line) len = (int)sizeof line - 1;
    line[len] = 0;
    size_t end = strcspn(line, "\r\n");
    while (end > 0 && (line[end - 1] == ' ' || line[end - 1] == '\t')) end--;
    line[end] = 0;
    if (!line[0]) memcpy(line, "unknown", sizeof "unknown");
    return line;
}

/* ---- gathering byte buffers (the trace) ----------------------------------- */

double dt_comm_clock_origin(void)
{
    /* Twice: the first barrier absorbs ranks still arriving from start-up,
     * the second one's exit is as close together as ranks leave anything. */
    for (int i = 0; i < 2; i++) {
        if (!watching()) {
            MPI_Barrier(MPI_COMM_WORLD);
            continue;
        }
        MPI_Request req;
        MPI_Ibarrier(MPI_COMM_WORLD, &req);
        dt__comm_wait(1, &req, "the barrier that aligns the trace clocks");
    }
    return MPI_Wtime();
}

/* Point to point, in chunks below INT_MAX bytes, rank by rank: this runs
 * once per run, and MPI_Gatherv would limit the total to int bytes. */
enum { GATHER_TAG = 0x7d7a };

dt_status dt_comm_gather_bytes(const void *mine, size_t len, int root, void **all,
                               size_t *lens, dt_error *err)
{
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    *all = NULL;
    uint64_t my_len = len;
    uint64_t *got = NULL;
    if (rank == root) {
        got = dt_calloc((size_t)world, sizeof *got);
        if (!got) DT_BUG("out of memory gathering %d lengths", world);
    }
    MPI_Request req;
    if (!watching()) {
        MPI_Gather(&my_len, 1, MPI_UINT64_T, got, 1, MPI_UINT64_T, root, MPI_COMM_WORLD);
    } else {
        MPI_Igather(&my_len, 1, MPI_UINT64_T, got, 1, MPI_UINT64_T, root, MPI_COMM_WORLD, &req);
        dt__comm_wait(1, &req, "the gather of buffer lengths");
    }
    /* the root says whether it could allocate before anyone sends */
    int ok = 1;
    unsigned char *buf = NULL;
    if (rank == root) {
        size_t total = 0;
        for (int r = 0; r < world; r++) total += (size_t)got[r];
        buf = dt_malloc(total);
        ok = buf != NULL;
    }
    bcast_watched(&ok, 1, MPI_INT, root, "the gather of buffers");
    if (!ok) {
        dt_free(got);
        return dt_fail(err, DT_EINTERNAL, "rank %d: out of memory gathering buffers", root);
    }
    const size_t chunk = (size_t)1 << 30;
    if (rank == root) {
        size_t off = 0;
        for (int r = 0; r < world; r++) {
            lens[r] = (size_t)got[r];
            if (r == root) {
                if (len) memcpy(buf + off, mine, len);
            } else {
                for (size_t done = 0; done < lens[r]; done += chunk) {
                    MPI_Irecv(buf + off + done, (int)DT_MIN(chunk, lens[r] - done), MPI_BYTE, r,
                              GATHER_TAG, MPI_COMM_WORLD, &req);
                    dt__comm_wait(1, &req, "the gather of buffers");
                }
            }
            off += lens[r];
        }
        *all = buf;
    } else {
        for (size_t done = 0; done < len; done += chunk) {
            MPI_Isend((const char *)mine + done, (int)DT_MIN(chunk, len - done), MPI_BYTE, root,
                      GATHER_TAG, MPI_COMM_WORLD, &req);
            dt__comm_wait(1, &req, "the gather of buffers");
        }
    }
    dt_free(got);
    return DT_OK;
}
