/* conn_harness: the connection-setup bench's echo target and load generator, in C.
 *
 *   conn_harness echo PORT
 *   conn_harness loadgen PORT CONCURRENCY SECONDS COUNT [lat [GAP_MS]]  (both on 127.0.0.1)
 *
 * The same two programs as the Python ones in bench/tunnel_bench/run.py (--echo, --loadgen),
 * doing the same work per connection and printing the same JSON line, at a fraction of their
 * CPU: the Python pair takes about 120 us of CPU per connection on this kind of machine, which
 * on 2 cores the relays under test cannot have, so it squeezes every relay's rate (and its
 * ratio to another relay) towards the harness's own. run.py builds this with cc and uses it
 * when it can (--harness python for the old pair).
 *
 * echo: one thread, epoll; accepts (non-blocking, TCP_NODELAY), echoes everything, closes on
 * end-of-file or error.
 * loadgen: `CONCURRENCY` connections at a time, each: socket (non-blocking, TCP_NODELAY),
 * connect, send 64 bytes once writable, read them back, close; new ones for SECONDS or until
 * COUNT have completed. Latency: connect() to the first echoed byte. Errors are counted by
 * errno name. With GAP_MS (concurrency 1 only), each connection after the first starts GAP_MS
 * after the one before it ended: a connection to a tunnel that was idle meanwhile, where
 * back-to-back connections would find it still busy with the last one's aftermath (a pool
 * refilling, a session ticket). Not part of kaminari. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { PAYLOAD = 64, HARD_EXTRA_S = 5, MAX_ERRORS = 1000 };

static size_t raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)1 << 22)
            return (size_t)rl.rlim_cur;
    }
    return (size_t)1 << 22;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static void nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ---- echo ---------------------------------------------------------------------------------- */

struct pending { /* bytes read but not yet echoed (the peer's receive window was full) */
    char* buf;
    size_t off, len;
};

static void echo_close(int ep, int fd, struct pending* p) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    free(p[fd].buf);
    p[fd].buf = NULL;
    p[fd].off = p[fd].len = 0;
    close(fd);
}

static int echo(int port) {
    size_t nofile = raise_nofile();
    struct pending* p = calloc(nofile, sizeof *p);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = loopback(port);
    if (!p || ls < 0 || bind(ls, (struct sockaddr*)&a, sizeof a) < 0 || listen(ls, 4096) < 0) {
        fprintf(stderr, "conn_harness echo: %s\n", strerror(errno));
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    static char buf[65536];
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, 1000);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                for (int k = 0; k < 256; k++) {
                    int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0)
                        break;
                    if ((size_t)c >= nofile) {
                        close(c);
                        continue;
                    }
                    nodelay(c);
                    struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce) < 0)
                        close(c);
                }
                continue;
            }
            struct pending* q = &p[fd];
            if (q->len) { /* waiting for room: send what is left */
                ssize_t w = send(fd, q->buf + q->off, q->len, MSG_NOSIGNAL);
                if (w < 0 && errno != EAGAIN && errno != EINTR) {
                    echo_close(ep, fd, p);
                    continue;
                }
                if (w > 0) {
                    q->off += (size_t)w;
                    q->len -= (size_t)w;
                }
                if (!q->len) {
                    struct epoll_event ce = {.events = EPOLLIN, .data.fd = fd};
                    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ce);
                }
                continue;
            }
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0) {
                echo_close(ep, fd, p);
                continue;
            }
            ssize_t w = send(fd, buf, (size_t)r, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN && errno != EINTR) {
                echo_close(ep, fd, p);
                continue;
            }
            if (w < 0)
                w = 0;
            if (w < r) {
                size_t rest = (size_t)(r - w);
                q->buf = realloc(q->buf, rest);
                if (!q->buf) {
                    echo_close(ep, fd, p);
                    continue;
                }
                memcpy(q->buf, buf + w, rest);
                q->off = 0;
                q->len = rest;
                struct epoll_event ce = {.events = EPOLLOUT, .data.fd = fd};
                epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ce);
            }
        }
    }
}

/* ---- loadgen ------------------------------------------------------------------------------- */

struct conn {
    double t0, t_first;
    int state; /* 0: connecting, 1: sent, waiting for the echo */
    size_t got;
};

struct err_kind {
    int err;
    long count;
};

static struct err_kind kinds[64];
static int n_kinds;
static long errors;

static void note_error(int err) {
    errors++;
    for (int i = 0; i < n_kinds; i++)
        if (kinds[i].err == err) {
            kinds[i].count++;
            return;
        }
    if (n_kinds < 64)
        kinds[n_kinds++] = (struct err_kind){err, 1};
}

static const char* err_name(int err) {
    if (err == -1)
        return "ConnectionError"; /* end-of-file before the echo, as run.py says */
    const char* s = strerrorname_np(err);
    return s ? s : "?";
}

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

static double percentile(double* sorted, size_t n, double q) {
    if (!n)
        return 0;
    double k = nearbyint(q * (double)(n - 1)); /* round half to even, as Python's round() */
    if (k < 0)
        k = 0;
    if (k > (double)(n - 1))
        k = (double)(n - 1);
    return sorted[(size_t)k];
}

struct loadgen {
    int ep;
    struct sockaddr_in addr;
    size_t nofile;
    struct conn* conns;
    char* open_fd;
    long live, done, concurrency, count;
    double end, gap;
};

static int may_open(const struct loadgen* g) {
    return now_s() < g->end && g->done + g->live < g->count && g->live < g->concurrency &&
           errors <= MAX_ERRORS;
}

/* Starts one connection (counts an error if it cannot). */
static void open_one(struct loadgen* g) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) {
        note_error(errno);
        return;
    }
    if ((size_t)s >= g->nofile) {
        close(s);
        note_error(EMFILE);
        return;
    }
    nodelay(s);
    double t0 = now_s();
    if (connect(s, (struct sockaddr*)&g->addr, sizeof g->addr) < 0 && errno != EINPROGRESS) {
        note_error(errno);
        close(s);
        return;
    }
    struct epoll_event ce = {.events = EPOLLOUT, .data.fd = s};
    if (epoll_ctl(g->ep, EPOLL_CTL_ADD, s, &ce) < 0) {
        note_error(errno);
        close(s);
        return;
    }
    g->conns[s] = (struct conn){.t0 = t0};
    g->open_fd[s] = 1;
    g->live++;
}

/* Sleeps `s` seconds (EINTR resumes the rest). */
static void pause_s(double s) {
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static int loadgen(int port, long concurrency, double seconds, long count, int want_lat,
                   double gap) {
    struct loadgen g = {.addr = loopback(port),
                        .nofile = raise_nofile(),
                        .concurrency = concurrency,
                        .count = count,
                        .gap = gap};
    g.conns = calloc(g.nofile, sizeof *g.conns);
    g.open_fd = calloc(g.nofile, 1);
    size_t lat_cap = 1 << 16, n_lat = 0;
    double* lat = malloc(lat_cap * sizeof *lat);
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    if (!g.conns || !g.open_fd || !lat || g.ep < 0) {
        fprintf(stderr, "conn_harness loadgen: %s\n", strerror(errno));
        return 1;
    }
    static const char payload[PAYLOAD] = {[0 ... PAYLOAD - 1] = 'k'};
    static char buf[65536];
    long completed = 0;
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double start = now_s(), hard_end;
    g.end = start + seconds;
    hard_end = g.end + HARD_EXTRA_S;

    while (may_open(&g))
        open_one(&g);
    struct epoll_event evs[256];
    while (g.live > 0 && now_s() < hard_end) {
        int n = epoll_wait(g.ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (!g.open_fd[fd])
                continue;
            struct conn* c = &g.conns[fd];
            int failed = 0, finished = 0;
            if (c->state == 0) { /* connected (or not): send the payload */
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err) {
                    failed = err;
                } else {
                    ssize_t w = send(fd, payload, PAYLOAD, MSG_NOSIGNAL);
                    if (w < 0 && errno != EAGAIN && errno != EINTR) {
                        failed = errno;
                    } else if (w >= 0) {
                        c->state = 1;
                        struct epoll_event ce = {.events = EPOLLIN, .data.fd = fd};
                        epoll_ctl(g.ep, EPOLL_CTL_MOD, fd, &ce);
                    }
                }
            } else {
                ssize_t r = recv(fd, buf, sizeof buf, 0);
                if (r < 0 && errno != EAGAIN && errno != EINTR) {
                    failed = errno;
                } else if (r == 0) {
                    failed = -1;
                } else if (r > 0) {
                    if (c->t_first == 0)
                        c->t_first = now_s();
                    c->got += (size_t)r;
                    finished = c->got >= PAYLOAD;
                }
            }
            if (failed || finished) {
                epoll_ctl(g.ep, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
                g.open_fd[fd] = 0;
                g.live--;
                if (failed)
                    note_error(failed);
            }
            if (finished) {
                completed++;
                if (c->t_first <= g.end) {
                    g.done++;
                    if (n_lat == lat_cap) {
                        double* more = realloc(lat, 2 * lat_cap * sizeof *lat);
                        if (more) {
                            lat = more;
                            lat_cap *= 2;
                        }
                    }
                    if (n_lat < lat_cap)
                        lat[n_lat++] = c->t_first - c->t0;
                }
            }
            if ((failed || finished) && g.gap > 0 && may_open(&g))
                pause_s(g.gap);
            while (may_open(&g))
                open_one(&g);
        }
        if (errors > MAX_ERRORS)
            break;
    }
    double t_end = now_s();
    double wall = t_end - start;
    double elapsed = (t_end < g.end ? t_end : g.end) - start;
    for (size_t fd = 0; fd < g.nofile; fd++)
        if (g.open_fd[fd])
            close((int)fd);
    getrusage(RUSAGE_SELF, &ru1);
    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                 (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                 (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;

    printf("{");
    if (want_lat) {
        printf("\"lat_us\": [");
        for (size_t i = 0; i < n_lat; i++)
            printf(i ? ", %.0f" : "%.0f", nearbyint(lat[i] * 1e6));
        printf("], ");
    }
    qsort(lat, n_lat, sizeof *lat, cmp_double);
    printf("\"done\": %ld, \"completed\": %ld, \"errors\": %ld, \"error_kinds\": {", g.done,
           completed, errors);
    for (int i = 0; i < n_kinds; i++)
        printf(i ? ", \"%s\": %ld" : "\"%s\": %ld", err_name(kinds[i].err), kinds[i].count);
    printf("}, \"wall\": %.6f, \"cpu_busy\": %.6f, \"cpu_us_per_conn\": %.3f, "
           "\"seconds\": %.6f, \"rate\": %.3f, \"p50_ms\": %.6f, \"p99_ms\": %.6f}\n",
           wall, wall > 0 ? cpu / wall : 0, completed ? cpu / (double)completed * 1e6 : 0, elapsed,
           elapsed > 0 ? (double)g.done / elapsed : 0, percentile(lat, n_lat, 0.50) * 1e3,
           percentile(lat, n_lat, 0.99) * 1e3);
    fflush(stdout);
    return 0;
}

int main(int argc, char** argv) {
    if (argc == 3 && strcmp(argv[1], "echo") == 0)
        return echo(atoi(argv[2]));
    const double gap_ms = argc == 8 ? atof(argv[7]) : 0;
    if ((argc >= 6 && argc <= 8) && strcmp(argv[1], "loadgen") == 0 &&
        (argc < 8 || (strcmp(argv[6], "lat") == 0 && gap_ms > 0 && atol(argv[3]) == 1)))
        return loadgen(atoi(argv[2]), atol(argv[3]), atof(argv[4]), atol(argv[5]),
                       argc >= 7 && strcmp(argv[6], "lat") == 0, gap_ms / 1e3);
    fprintf(stderr, "usage: conn_harness echo PORT\n"
                    "       conn_harness loadgen PORT CONCURRENCY SECONDS COUNT [lat [GAP_MS]]\n"
                    "       (GAP_MS > 0, with CONCURRENCY 1 only)\n");
    return 2;
}
