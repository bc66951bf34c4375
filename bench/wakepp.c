/*
 * Cross-CPU wake-up cost of this machine (built and run by bench/bench_wake.py; not a test).
 *
 * A waker thread pinned to one CPU writes its CLOCK_MONOTONIC time into shared memory and
 * then writes an eventfd; a sleeper thread pinned to another CPU waits for the eventfd and
 * takes the time again when it runs: that difference is the one-way wake-up latency. The
 * sleeper waits in one of three ways:
 *   block  - epoll_wait on the eventfd (its CPU idles: what vspan's engine does with
 *            switch.poll off, and adaptive outside its window);
 *   spin   - epoll_wait with timeout 0 in a loop (what the busy-poll window does);
 *   same   - block, but on the waker's CPU (the wake stays on one CPU).
 * Usage: wakepp MODE WAKER_CPU SLEEPER_CPU COUNT GAP_US
 * Prints one line: the latencies in ns, sorted, space separated.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static int efd, epfd, spin, count;
static volatile int64_t stamp;
static int64_t *lat;
static volatile int done_one;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0) {
        perror("sched_setaffinity");
        exit(2);
    }
}

static int sleeper_cpu;

static void *sleeper(void *arg)
{
    (void)arg;
    pin(sleeper_cpu);
    struct epoll_event ev;
    for (int i = 0; i < count; i++) {
        int n;
        do
            n = epoll_wait(epfd, &ev, 1, spin ? 0 : -1);
        while (n == 0);
        int64_t t = now_ns();
        uint64_t v;
        if (read(efd, &v, sizeof(v)) != sizeof(v))
            exit(3);
        lat[i] = t - stamp;
        __atomic_store_n(&done_one, 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: wakepp block|spin|same WAKER_CPU SLEEPER_CPU COUNT GAP_US\n");
        return 2;
    }
    const char *mode = argv[1];
    int waker_cpu = atoi(argv[2]);
    sleeper_cpu = atoi(argv[3]);
    count = atoi(argv[4]);
    long gap_us = atol(argv[5]);
    spin = strcmp(mode, "spin") == 0;
    if (strcmp(mode, "same") == 0)
        sleeper_cpu = waker_cpu;
    lat = calloc((size_t)count, sizeof(*lat));
    efd = eventfd(0, EFD_NONBLOCK);
    epfd = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    if (!lat || efd < 0 || epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, efd, &ev) < 0) {
        perror("setup");
        return 2;
    }
    pin(waker_cpu);
    pthread_t th;
    pthread_create(&th, NULL, sleeper, NULL);
    struct timespec gap = {.tv_sec = gap_us / 1000000, .tv_nsec = (gap_us % 1000000) * 1000};
    for (int i = 0; i < count; i++) {
        nanosleep(&gap, NULL); /* the sleeper's CPU goes idle (block) meanwhile */
        __atomic_store_n(&done_one, 0, __ATOMIC_RELEASE);
        stamp = now_ns();
        uint64_t one = 1;
        if (write(efd, &one, sizeof(one)) != sizeof(one))
            return 3;
        while (!__atomic_load_n(&done_one, __ATOMIC_ACQUIRE))
            if (strcmp(mode, "same") == 0)
                sched_yield();
            else
                nanosleep(&(struct timespec){0, 20000}, NULL);
    }
    pthread_join(th, NULL);
    qsort(lat, (size_t)count, sizeof(*lat), cmp);
    for (int i = 0; i < count; i++)
        printf("%s%lld", i ? " " : "", (long long)lat[i]);
    printf("\n");
    return 0;
}
