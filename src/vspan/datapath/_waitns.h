/*
 * A blocking epoll wait with a timeout finer than a millisecond (included by _wake.h).
 *
 * The predicted polling windows of switch.poll adaptive (datapath/arrivals.py) open a
 * hundred microseconds or so before a burst is due: epoll_wait's millisecond timeout
 * would wake the engine up to a millisecond late.  epoll_pwait2 (Linux 5.11) takes a
 * timespec; without it the timeout is rounded up to whole milliseconds, as before.
 */

#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int wait_ns(int epfd, struct epoll_event *evs, int max, int64_t ns)
{
#ifdef SYS_epoll_pwait2
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000LL),
                          .tv_nsec = (long)(ns % 1000000000LL)};
    long r = syscall(SYS_epoll_pwait2, epfd, evs, max, &ts, NULL, (size_t)0);
    if (r >= 0 || errno != ENOSYS)
        return (int)r;
#endif
    int64_t ms = (ns + 999999) / 1000000;
    return epoll_wait(epfd, evs, max, ms > 0x7fffffff ? 0x7fffffff : (int)ms);
}
