/* s6bench: s6-fdholderd driven through its own C library (libs6,
 * s6/fdholder.h), the closest peer of fdholderd.
 *
 *   s6bench store PATH ID
 *     binds a non-blocking TCP listener (127.0.0.1, any port) and stores it
 *     in the s6-fdholderd at PATH under ID (s6_fdholder_store).
 *
 *   s6bench get [-m conn|newconn] [-c CONC] (-i ITERS | -d SECONDS) PATH ID
 *     retrieves ID again and again (s6_fdholder_retrieve), closing each
 *     descriptor received, and prints one JSON line of figures (stats.h).
 *     -m newconn starts a new connection (s6_fdholder_start) for every
 *     retrieve, as s6-fdholder-retrieve does once per run.
 *
 * Each worker thread has its own connection and its own clock stamp: the
 * library's _g macros share the global STAMP, which threads must not.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <skalibs/tai.h>
#include <s6/fdholder.h>

#include "stats.h"

struct s6client {
  const char *path, *id;
  int newconn;
  s6_fdholder_t a;
  tain stamp;
};

/* OP_TIMEOUT bounds every call, so that a refused connection cannot hang a
 * run: the library's calls take an absolute deadline. */
#define OP_TIMEOUT 5

static int s6_op(void *state)
{
  struct s6client *c = state;
  int rc = -1;
  tain deadline;
  tain_now(&c->stamp);
  tain_addsec(&deadline, &c->stamp, OP_TIMEOUT);
  if (c->newconn) {
    s6_fdholder_t a = S6_FDHOLDER_ZERO;
    if (!s6_fdholder_start(&a, c->path, &deadline, &c->stamp)) return -1;
    int fd = s6_fdholder_retrieve(&a, c->id, &deadline, &c->stamp);
    if (fd >= 0) { close(fd); rc = 0; }
    s6_fdholder_end(&a);
    return rc;
  }
  int fd = s6_fdholder_retrieve(&c->a, c->id, &deadline, &c->stamp);
  if (fd < 0) return -1;
  close(fd);
  return 0;
}

static int store(const char *path, const char *id)
{
  int ln = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  if (ln < 0 || bind(ln, (struct sockaddr *)&in, sizeof in) < 0 || listen(ln, 128) < 0) { perror("s6bench: tcp listener"); return 111; }
  s6_fdholder_t a = S6_FDHOLDER_ZERO;
  tain stamp;
  tain_now(&stamp);
  if (!s6_fdholder_start(&a, path, &tain_infinite, &stamp)) { perror("s6bench: s6_fdholder_start"); return 111; }
  if (!s6_fdholder_store(&a, ln, id, &tain_infinite, &tain_infinite, &stamp)) { perror("s6bench: s6_fdholder_store"); return 111; }
  s6_fdholder_end(&a);
  close(ln);
  return 0;
}

int main(int argc, char **argv)
{
  signal(SIGPIPE, SIG_IGN);
  if (argc == 4 && strcmp(argv[1], "store") == 0) return store(argv[2], argv[3]);
  if (argc < 2 || strcmp(argv[1], "get") != 0) {
    fprintf(stderr, "usage: s6bench store PATH ID | s6bench get [-m conn|newconn] [-c CONC] (-i ITERS | -d SECONDS) PATH ID\n");
    return 100;
  }
  argc--, argv++;
  const char *mode = "conn";
  int conc = 1, opt;
  long iters = 0;
  double duration = 1;
  while ((opt = getopt(argc, argv, "m:c:i:d:")) != -1) {
    switch (opt) {
    case 'm': mode = optarg; break;
    case 'c': conc = atoi(optarg); break;
    case 'i': iters = atol(optarg); break;
    case 'd': duration = atof(optarg); break;
    default: return 100;
    }
  }
  if (optind != argc - 2 || conc < 1) { fprintf(stderr, "s6bench get: usage\n"); return 100; }
  void **states = calloc(conc, sizeof *states);
  for (int i = 0; i < conc; i++) {
    struct s6client *c = calloc(1, sizeof *c);
    c->path = argv[optind];
    c->id = argv[optind + 1];
    c->newconn = strcmp(mode, "newconn") == 0;
    tain_now(&c->stamp);
    if (!c->newconn && !s6_fdholder_start(&c->a, c->path, &tain_infinite, &c->stamp)) { perror("s6bench: s6_fdholder_start"); return 111; }
    states[i] = c;
  }
  char label[64];
  snprintf(label, sizeof label, "s6-%s", mode);
  return run_workers(label, conc, iters, duration, s6_op, states);
}
