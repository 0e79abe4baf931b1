/* rawbench: the physical limit of a descriptor round trip, as a server and
 * a client in plain C.
 *
 *   rawbench serve PATH
 *     listens on an AF_UNIX SOCK_SEQPACKET socket at PATH and holds one
 *     non-blocking TCP listener (127.0.0.1, any port). Every message a
 *     client sends is answered with a 72-byte reply carrying a duplicate of
 *     that listener (SCM_RIGHTS, unix(7)): a thread per connection, blocking
 *     recvmsg/sendmsg, nothing else. That is the least any holder can do.
 *
 *   rawbench client [-p raw|fdh] [-n NAME] [-m conn|newconn] [-c CONC]
 *                   (-i ITERS | -d SECONDS) PATH
 *     sends requests and receives one descriptor per reply, closing it, and
 *     prints one JSON line of figures (stats.h). -p fdh speaks the fdholder
 *     protocol (a version 1 "get" of NAME, docs/protocol.md) so the same C
 *     client can drive fdholderd; -p raw (the default) sends a request of
 *     the same size to "rawbench serve". -m newconn connects anew for every
 *     request, as a process that runs once does.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "stats.h"

#define REPLY_LEN 72 /* an fdholder get reply for a short name is this size */

static int held = -1;

static void die(const char *what)
{
  perror(what);
  exit(111);
}

static struct sockaddr_un unix_addr(const char *path)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  if (strlen(path) >= sizeof sa.sun_path) { fprintf(stderr, "rawbench: path too long\n"); exit(100); }
  strcpy(sa.sun_path, path);
  return sa;
}

static int send_fd(int s, const void *buf, size_t len, int fd)
{
  union { char b[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctl;
  struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
  struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b };
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  return sendmsg(s, &m, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

/* recv_fd receives one message and returns its length; *fd is the
 * descriptor it carried, or -1. */
static ssize_t recv_fd(int s, void *buf, size_t len, int *fd)
{
  union { char b[CMSG_SPACE(sizeof(int) * 4)]; struct cmsghdr align; } ctl;
  struct iovec iov = { .iov_base = buf, .iov_len = len };
  struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b };
  *fd = -1;
  ssize_t n = recvmsg(s, &m, MSG_CMSG_CLOEXEC);
  if (n < 0) return -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(fd, CMSG_DATA(c), sizeof *fd);
  return n;
}

static void *serve_conn(void *arg)
{
  int s = (int)(intptr_t)arg;
  char in[1024], out[REPLY_LEN];
  memset(out, 'r', sizeof out);
  for (;;) {
    int fd;
    ssize_t n = recv_fd(s, in, sizeof in, &fd);
    if (fd >= 0) close(fd);
    if (n <= 0) break;
    if (send_fd(s, out, sizeof out, held) < 0) break;
  }
  close(s);
  return NULL;
}

static _Noreturn void serve(const char *path)
{
  /* The held socket: a non-blocking TCP listener, as a service's is. */
  held = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  if (held < 0 || bind(held, (struct sockaddr *)&in, sizeof in) < 0 || listen(held, 128) < 0) die("rawbench: tcp listener");
  struct sockaddr_un sa = unix_addr(path);
  unlink(path);
  int ln = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (ln < 0 || bind(ln, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ln, 1024) < 0) die("rawbench: listen");
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  for (;;) {
    int s = accept4(ln, NULL, NULL, SOCK_CLOEXEC);
    if (s < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      die("rawbench: accept");
    }
    pthread_t t;
    if (pthread_create(&t, &attr, serve_conn, (void *)(intptr_t)s) != 0) close(s);
  }
}

/* The client. */

struct client {
  struct sockaddr_un sa;
  int fdh;     /* speak the fdholder protocol */
  int newconn; /* a connection per request */
  int s;       /* the connection, in conn mode */
  char req[300];
  size_t reqlen;
};

static int dial(const struct client *c)
{
  int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  if (connect(s, (const struct sockaddr *)&c->sa, sizeof c->sa) < 0) { close(s); return -1; }
  return s;
}

static int client_op(void *state)
{
  struct client *c = state;
  int s = c->newconn ? dial(c) : c->s;
  if (s < 0) return -1;
  unsigned char rep[65536];
  int fd = -1, rc = -1;
  if (send(s, c->req, c->reqlen, MSG_NOSIGNAL) != (ssize_t)c->reqlen) goto out;
  ssize_t n = recv_fd(s, rep, sizeof rep, &fd);
  if (n <= 0 || fd < 0) goto out;
  if (c->fdh && (n < 8 || rep[0] != 'F' || rep[1] != 'H' || rep[3] != 0x82 || rep[6] || rep[7])) goto out;
  rc = 0;
out:
  if (fd >= 0) close(fd);
  if (c->newconn) close(s);
  return rc;
}

static int client(int argc, char **argv)
{
  const char *proto = "raw", *name = "bench", *mode = "conn";
  int conc = 1, opt;
  long iters = 0;
  double duration = 1;
  while ((opt = getopt(argc, argv, "p:n:m:c:i:d:")) != -1) {
    switch (opt) {
    case 'p': proto = optarg; break;
    case 'n': name = optarg; break;
    case 'm': mode = optarg; break;
    case 'c': conc = atoi(optarg); break;
    case 'i': iters = atol(optarg); break;
    case 'd': duration = atof(optarg); break;
    default: return 100;
    }
  }
  if (optind != argc - 1 || conc < 1) { fprintf(stderr, "rawbench client: usage\n"); return 100; }
  void **states = calloc(conc, sizeof *states);
  for (int i = 0; i < conc; i++) {
    struct client *c = calloc(1, sizeof *c);
    c->sa = unix_addr(argv[optind]);
    c->fdh = strcmp(proto, "fdh") == 0;
    c->newconn = strcmp(mode, "newconn") == 0;
    size_t nl = strlen(name);
    if (nl > 255) return 100;
    /* A fdholder version 1 get: magic, version, op 2, flags 0, status 0,
     * str8 name (docs/protocol.md). The raw request has the same size. */
    unsigned char hdr[8] = { 'F', 'H', 1, 2, 0, 0, 0, 0 };
    memcpy(c->req, hdr, 8);
    c->req[8] = (char)nl;
    memcpy(c->req + 9, name, nl);
    c->reqlen = 9 + nl;
    if (!c->newconn && (c->s = dial(c)) < 0) die("rawbench: connect");
    states[i] = c;
  }
  char label[64];
  snprintf(label, sizeof label, "c-%s-%s", proto, mode);
  return run_workers(label, conc, iters, duration, client_op, states);
}

int main(int argc, char **argv)
{
  signal(SIGPIPE, SIG_IGN);
  if (argc == 3 && strcmp(argv[1], "serve") == 0) serve(argv[2]);
  if (argc >= 2 && strcmp(argv[1], "client") == 0) return client(argc - 1, argv + 1);
  fprintf(stderr, "usage: rawbench serve PATH | rawbench client [-p raw|fdh] [-n NAME] [-m conn|newconn] [-c CONC] (-i ITERS | -d SECONDS) PATH\n");
  return 100;
}
