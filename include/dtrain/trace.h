/* trace.h - a bounded timeline of a run, written as a Chrome/Perfetto trace.
 *
 * Each rank records spans (a phase with a start and an end time, in seconds
 * of its own clock, e.g. MPI_Wtime) into a buffer allocated once at
 * start-up: recording copies 48 bytes and allocates nothing, so the
 * training loop stays allocation-free. Names and categories are pointers to
 * static strings (literals), never copied while recording.
 *
 * Bounded twice: only spans of the first `steps` updates (from first_step)
 * are kept, and at most max_events of them; a span of a traced update that
 * finds the buffer full is dropped and counted (dt_trace_dropped), and the
 * JSON says how many.
 *
 * At the end every rank serialises its spans (dt_trace_serialize), comm
 * gathers the byte buffers to rank 0 (dt_comm_gather_bytes), and rank 0
 * writes one JSON file (dt_trace_write_json): the "traceEvents" array of
 * complete ("X") events, one process per rank (pid = rank, named "rank N"),
 * one thread per category, with as many extra rows of a category as its
 * overlapping spans need (buckets in flight at the same time), since a
 * Chrome track only draws properly nested spans. ts and dur are
 * microseconds since the rank's origin.
 *
 * Clocks of different nodes are not synchronised: each rank's origin is its
 * own clock read right after a barrier (dt_comm_clock_origin), so the
 * tracks line up to within the barrier's exit skew (microseconds on one
 * node, tens of microseconds across a network). Offsets between nodes of
 * that size are the barrier, not the program. */
#ifndef DTRAIN_TRACE_H
#define DTRAIN_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "dtrain/common.h"

typedef struct dt_trace dt_trace;

/* A recorder for spans of updates [first_step, first_step + steps), at most
 * max_events of them, of rank `rank`, with times relative to `origin`
 * (seconds, same clock as the spans). DT_EINTERNAL if out of memory. */
dt_status dt_trace_create(size_t max_events, long first_step, long steps, int rank,
                          double origin, dt_trace **out, dt_error *err);
void dt_trace_free(dt_trace *t);

/* True iff spans of update `step` are kept (t may be NULL: tracing is off),
 * so callers can skip reading the clock for updates past the window. */
int dt_trace_wants(const dt_trace *t, long step);

/* Record the span [t0, t1] (seconds) named `name` in category `cat`, both
 * static strings. step: the update it belongs to (< 0: outside any update,
 * kept while there is room, e.g. a final evaluation). arg: an index shown
 * in the name and the event's args (layer, bucket), or -1 for none.
 * A no-op when t is NULL or the step is past the window. */
void dt_trace_span(dt_trace *t, const char *name, const char *cat, double t0, double t1,
                   long step, long arg);

size_t dt_trace_count(const dt_trace *t);   /* spans kept */
size_t dt_trace_dropped(const dt_trace *t); /* spans of traced updates lost to a full buffer */

/* Upper bound on the spans of one update that records data, forward and
 * backward per layer, one span per bucket, the exchange's wait, the
 * optimizer and a few more: a size for max_events = steps x this + room for
 * evaluations and checkpoints. */
size_t dt_trace_events_per_update(int layers, int buckets);

/* This rank's spans as a compact byte buffer (dt_malloc'd, free with
 * dt_free): the input of dt_trace_write_json after a gather. Called once,
 * after the loop (it allocates). */
dt_status dt_trace_serialize(const dt_trace *t, void **buf, size_t *len, dt_error *err);

/* Rank 0: write the buffers of n_ranks ranks, stored back to back in `all`
 * (rank r's is lens[r] bytes, as dt_comm_gather_bytes returns them), as one
 * Chrome trace JSON file at `path`, atomically (a temporary file in the
 * same directory, flushed, then renamed). DT_EINTERNAL on an I/O error or
 * a malformed buffer; no file is left behind then. */
dt_status dt_trace_write_json(const char *path, const void *all, const size_t *lens,
                              int n_ranks, dt_error *err);

#endif
