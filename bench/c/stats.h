/* Shared by the C baselines of the benchmark suite: per-operation timing,
 * percentiles, the JSON result line, and the client loop driver.
 *
 * A client measures each operation with CLOCK_MONOTONIC (clock_gettime(2)
 * is a vDSO call, ~20 ns here) and prints one line of JSON that bench/run
 * collects: the same fields as fdbench, the Go driver. */
#ifndef BENCH_STATS_H
#define BENCH_STATS_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline int64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* maxSamples bounds the memory of one worker's samples; past it, every
 * operation still counts towards the rate but is not kept for percentiles. */
#define MAX_SAMPLES 2000000

static int cmp_i64(const void *a, const void *b)
{
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* A client op: one request and its reply, on the worker's state. Returns 0
 * on success. */
typedef int (*op_fn)(void *state);

struct worker {
  op_fn op;
  void *state;
  long iters;      /* stop after this many ops, if > 0 */
  double duration; /* else stop after this many seconds */
  int64_t *samples;
  long n, kept, errors;
  int64_t start, end;
};

static void *run_worker(void *arg)
{
  struct worker *w = arg;
  int64_t stop = 0;
  w->samples = malloc(sizeof(int64_t) * MAX_SAMPLES);
  if (!w->samples) { perror("malloc"); exit(1); }
  w->start = now_ns();
  if (w->iters <= 0) stop = w->start + (int64_t)(w->duration * 1e9);
  for (;;) {
    int64_t t0 = now_ns();
    if (w->iters > 0 ? w->n >= w->iters : t0 >= stop) break;
    if (w->op(w->state) != 0) { w->errors++; if (w->errors >= 10) break; continue; }
    int64_t t1 = now_ns();
    if (w->kept < MAX_SAMPLES) w->samples[w->kept++] = t1 - t0;
    w->n++;
  }
  w->end = now_ns();
  return NULL;
}

/* run_workers runs conc workers at once, each with its own state, then
 * prints the result line. Percentiles are over all kept samples. */
static int run_workers(const char *name, int conc, long iters, double duration,
                       op_fn op, void **states)
{
  struct worker *ws = calloc(conc, sizeof *ws);
  pthread_t *th = calloc(conc, sizeof *th);
  for (int i = 0; i < conc; i++) {
    ws[i].op = op; ws[i].state = states[i]; ws[i].iters = iters; ws[i].duration = duration;
    if (pthread_create(&th[i], NULL, run_worker, &ws[i]) != 0) { perror("pthread_create"); return 1; }
  }
  long total = 0, kept = 0, errors = 0;
  int64_t start = INT64_MAX, end = 0;
  for (int i = 0; i < conc; i++) {
    pthread_join(th[i], NULL);
    total += ws[i].n; kept += ws[i].kept; errors += ws[i].errors;
    if (ws[i].start < start) start = ws[i].start;
    if (ws[i].end > end) end = ws[i].end;
  }
  int64_t *all = malloc(sizeof(int64_t) * (kept ? kept : 1));
  long k = 0;
  for (int i = 0; i < conc; i++) {
    memcpy(all + k, ws[i].samples, sizeof(int64_t) * ws[i].kept);
    k += ws[i].kept;
    free(ws[i].samples);
  }
  qsort(all, kept, sizeof(int64_t), cmp_i64);
  double secs = (end - start) / 1e9;
  int64_t p50 = kept ? all[kept / 2] : 0;
  int64_t p99 = kept ? all[(long)(kept * 0.99)] : 0;
  int64_t mx = kept ? all[kept - 1] : 0;
  printf("{\"client\":\"%s\",\"conc\":%d,\"ops\":%ld,\"errors\":%ld,\"secs\":%.3f,"
         "\"ops_per_s\":%.1f,\"p50_ns\":%lld,\"p99_ns\":%lld,\"max_ns\":%lld}\n",
         name, conc, total, errors, secs, total / secs, (long long)p50, (long long)p99, (long long)mx);
  free(all); free(ws); free(th);
  return errors ? 1 : 0;
}

#endif
