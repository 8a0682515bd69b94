/* floor_relay: the least a TCP relay can do per connection, as a bench peer ("floor").
 *
 *   floor_relay LISTEN_PORT TARGET_PORT      (both on 127.0.0.1)
 *
 * One thread, one epoll set, edge-triggered, no timers, no options beyond the listening
 * socket's SO_REUSEADDR, no allocation but one struct per connection. Per connection it does
 * accept4 (non-blocking), socket (non-blocking), connect, two epoll ADDs (read and write
 * interest registered once, never modified), read/write until EAGAIN on each wake-up,
 * shutdown(SHUT_WR) for each end-of-file passed on, and two closes (which drop the epoll
 * registrations). Nothing a product needs (TCP_NODELAY, keepalive, deadlines, logging, a
 * second core, error reporting) is here: a pair of these is the bench's measure of the kernel's
 * share of a relayed connection, against which a real relay's own share can be read.
 * Not part of kaminari; bench/tunnel_bench/run.py builds it with cc. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { BUF = 16384 };

struct dir { /* bytes from one socket to the other */
    char buf[BUF];
    size_t off, len;
    int eof, shut;
};

struct conn {
    int fd[2]; /* 0: accepted, 1: dialed */
    struct dir d[2]; /* d[0]: fd[0] -> fd[1], d[1]: fd[1] -> fd[0] */
};

/* Moves what it can; 0 on progress or nothing to do, -1 on a socket error. */
static int pump(struct dir *d, int src, int dst) {
    for (;;) {
        if (d->len) {
            ssize_t n = send(dst, d->buf + d->off, d->len, MSG_NOSIGNAL);
            if (n < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
            d->off += (size_t)n;
            d->len -= (size_t)n;
            continue;
        }
        if (d->eof) {
            if (!d->shut) {
                if (shutdown(dst, SHUT_WR) < 0) return -1;
                d->shut = 1;
            }
            return 0;
        }
        ssize_t n = recv(src, d->buf, BUF, 0);
        if (n < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
        if (n == 0) d->eof = 1;
        d->off = 0;
        d->len = (size_t)n;
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: floor_relay LISTEN_PORT TARGET_PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_in la = {.sin_family = AF_INET}, ta = {.sin_family = AF_INET};
    la.sin_port = htons((unsigned short)atoi(argv[1]));
    ta.sin_port = htons((unsigned short)atoi(argv[2]));
    la.sin_addr.s_addr = ta.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&la, sizeof la) < 0 || listen(lfd, 4096) < 0) {
        perror("floor_relay: listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[256];
    for (;;) {
        int k = epoll_wait(ep, evs, 256, -1), nd = 0;
        struct conn *dead[256]; /* freed after the batch: a later event may point at one */
        for (int i = 0; i < k; i++) {
            if (!evs[i].data.ptr) {
                for (;;) {
                    int a = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                    if (a < 0) {
                        /* Out of descriptors: the connection stays in the backlog and the
                         * listener readable; pause rather than spin on it. */
                        if (errno == EMFILE || errno == ENFILE) usleep(10000);
                        break;
                    }
                    int b = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
                    struct conn *c = b < 0 ? NULL : calloc(1, sizeof *c);
                    if (!c || (connect(b, (struct sockaddr *)&ta, sizeof ta) < 0 &&
                               errno != EINPROGRESS)) {
                        close(a);
                        if (b >= 0) close(b);
                        free(c);
                        continue;
                    }
                    c->fd[0] = a;
                    c->fd[1] = b;
                    struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                            .data.ptr = c};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, a, &e) < 0 ||
                        epoll_ctl(ep, EPOLL_CTL_ADD, b, &e) < 0) {
                        close(a); /* closing also takes a registered descriptor out */
                        close(b);
                        free(c);
                    }
                }
                continue;
            }
            struct conn *c = evs[i].data.ptr;
            if (c->fd[0] < 0) continue; /* closed by an earlier event of this batch */
            int bad = pump(&c->d[0], c->fd[0], c->fd[1]) < 0 ||
                      pump(&c->d[1], c->fd[1], c->fd[0]) < 0;
            if (bad || (c->d[0].shut && c->d[1].shut)) {
                close(c->fd[0]);
                close(c->fd[1]);
                c->fd[0] = -1;
                dead[nd++] = c;
            }
        }
        while (nd) free(dead[--nd]);
    }
}
