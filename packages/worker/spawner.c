// The worker agent's spawner, compiled where a C compiler is found at build time
// (build-spawner.mjs); spawner.pl serves where it is not. Both speak the protocol described in
// spawner.pl, and the agent (src/spawn.ts, ProcessSpawner) cannot tell them apart.
//
// Why a second one: posix_spawn() starts the job with vfork semantics (clone(CLONE_VM |
// CLONE_VFORK)), so no page table is copied, and the job's exec has no copy of this process's
// memory to tear down. perl can only fork(): on a VM where page tables are dear, that was 3 ms more
// CPU per `true` job, and perl's own loop about 2 ms more than this one.
//
// Needs Linux 5.3+ (pidfd_open) and glibc 2.29+ (posix_spawn_file_actions_addchdir_np).
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

enum kind { OUT, ERR, PIDFD };

struct job {
  unsigned long long id;
  pid_t pid;
  int fd[3]; // stdout, stderr, pidfd; -1 once closed
  int polled[3]; // in the epoll set
  int paused, exited, closed, reaped, status;
  struct job *next;
};

struct owner {
  struct job *job;
  enum kind kind;
};

static struct job *jobs;
static struct owner *owners; // by descriptor
static int owners_len;
static int epfd, devnull, subreaper;
static long grace_ms = 5000;

// Output that keeps coming goes to the agent at most once a millisecond, so that fifty jobs each
// printing a line now and then wake it a thousand times a second, not five thousand; output after
// a quiet spell, and any news of a start or an exit, goes at once.
#define COALESCE_NS 1000000LL
#define COALESCE_MAX (64 * 1024)

static char *out;
static size_t out_len, out_cap;
static int urgent; // out holds more than output
static long long flushed_at = -COALESCE_NS; // CLOCK_MONOTONIC, ns
static char *in;
static size_t in_len, in_cap;

static void abandon(void);

static void grow(char **buf, size_t *cap, size_t need) {
  if (need <= *cap) return;
  size_t cap2 = *cap ? *cap : 65536;
  while (cap2 < need) cap2 *= 2;
  char *b = realloc(*buf, cap2);
  if (!b) abort();
  *buf = b;
  *cap = cap2;
}

static void emit(const char *data, size_t len) {
  grow(&out, &out_cap, out_len + len);
  memcpy(out + out_len, data, len);
  out_len += len;
}

static void emitf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emitf(const char *fmt, ...) {
  if (fmt[0] != 'D') urgent = 1;
  char line[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  emit(line, (size_t)n);
}

static long long monotonic_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void flush_out(void) {
  if (!out_len) return;
  urgent = 0;
  flushed_at = monotonic_ns();
  size_t at = 0;
  while (at < out_len) {
    ssize_t n = write(STDOUT_FILENO, out + at, out_len - at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      struct pollfd p = {.fd = STDOUT_FILENO, .events = POLLOUT};
      poll(&p, 1, -1);
      continue;
    }
    if (n <= 0) {
      out_len = 0;
      abandon(); // the agent is gone
    }
    at += (size_t)n;
  }
  out_len = 0;
}

static void set_owner(int fd, struct job *job, enum kind kind) {
  if (fd >= owners_len) {
    int len = owners_len ? owners_len : 1024;
    while (len <= fd) len *= 2;
    struct owner *o = realloc(owners, (size_t)len * sizeof *o);
    if (!o) abort();
    memset(o + owners_len, 0, (size_t)(len - owners_len) * sizeof *o);
    owners = o;
    owners_len = len;
  }
  owners[fd].job = job;
  owners[fd].kind = kind;
}

// Whether the descriptor is waited on: output only while not paused.
static void interest(int fd, int on, int *polled) {
  if (on == *polled) return;
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
  epoll_ctl(epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev);
  *polled = on;
}

static void arm(struct job *job) {
  for (int k = OUT; k <= PIDFD; k++)
    if (job->fd[k] >= 0) interest(job->fd[k], k == PIDFD || !job->paused, &job->polled[k]);
}

static void unwatch(struct job *job, enum kind k) {
  int fd = job->fd[k];
  if (fd < 0) return;
  interest(fd, 0, &job->polled[k]);
  owners[fd].job = NULL;
  close(fd);
  job->fd[k] = -1;
}

static void forget(struct job *job) {
  if (!job->exited || !job->closed) return;
  for (int k = OUT; k <= PIDFD; k++) unwatch(job, (enum kind)k);
  for (struct job **p = &jobs; *p; p = &(*p)->next)
    if (*p == job) {
      *p = job->next;
      break;
    }
  free(job);
}

static void pipes_closed(struct job *job) {
  if (job->closed) return;
  job->closed = 1;
  unwatch(job, OUT);
  unwatch(job, ERR);
  emitf("C %llu\n", job->id);
  forget(job);
}

static struct job *job_of_pid(pid_t pid) {
  for (struct job *j = jobs; j; j = j->next)
    if (j->pid == pid && !j->reaped) return j;
  return NULL;
}

// The pids listed in /proc/<pid>/task/<tid>/children, for every task of pid, appended to *list.
static void children_of(pid_t pid, pid_t **list, size_t *len, size_t *cap) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  DIR *d = opendir(path);
  if (!d) return;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    char file[320];
    snprintf(file, sizeof file, "/proc/%d/task/%s/children", pid, e->d_name);
    FILE *f = fopen(file, "re");
    if (!f) continue;
    for (int child; fscanf(f, "%d", &child) == 1;) {
      if (*len == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        pid_t *l = realloc(*list, *cap * sizeof **list);
        if (!l) abort();
        *list = l;
      }
      (*list)[(*len)++] = child;
    }
    fclose(f);
  }
  closedir(d);
}

// 1 when every child of this process is a job that has not been reaped: then nothing is left of
// the jobs that ended (this process is their subreaper, so what they left became its children).
static int alone(void) {
  if (!subreaper) return 0;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", getpid(), getpid());
  FILE *f = fopen(path, "re");
  if (!f) return 0;
  int result = 1;
  for (int child; fscanf(f, "%d", &child) == 1;)
    if (!job_of_pid(child)) {
      result = 0;
      break;
    }
  fclose(f);
  return result;
}

static char buf[65536];

// Reads what the job's pipes hold now, as far as they are not paused. Called when it has exited:
// what it wrote before then is all there, and goes out before its exit, which a reap may see first.
static void drain(struct job *job) {
  if (job->paused) return;
  for (int k = OUT; k <= ERR; k++)
    for (int i = 0; i < 16 && job->fd[k] >= 0; i++) {
      ssize_t n = read(job->fd[k], buf, sizeof buf);
      if (n > 0) {
        emitf("D %llu %c %zd\n", job->id, k == OUT ? 'o' : 'e', n);
        emit(buf, (size_t)n);
        continue;
      }
      if (n == 0) unwatch(job, (enum kind)k);
      break;
    }
}

static void exited(struct job *job) {
  drain(job);
  job->exited = 1;
  unwatch(job, PIDFD);
  int st = job->status;
  if (WIFSIGNALED(st)) emitf("X %llu -1 %d %d\n", job->id, WTERMSIG(st), alone());
  else emitf("X %llu %d 0 %d\n", job->id, WEXITSTATUS(st), alone());
  if (job->fd[OUT] < 0 && job->fd[ERR] < 0) pipes_closed(job);
  else forget(job);
}

static void reap_all(void) {
  int st;
  for (pid_t pid; (pid = waitpid(-1, &st, WNOHANG)) > 0;) {
    struct job *job = job_of_pid(pid);
    if (!job) continue; // an orphan a job left: nothing to report
    job->reaped = 1;
    job->status = st;
    exited(job);
  }
}

// payload: file \0 cwd \0 argc \0 argv[1..argc] \0 "KEY=value"... (NUL-separated, no trailing NUL)
static void start(unsigned long long id, char *payload, size_t len, int paused) {
  size_t nfields = 1;
  for (size_t i = 0; i < len; i++)
    if (!payload[i]) nfields++;
  char **fields = malloc((nfields + 2) * sizeof *fields);
  if (!fields) abort();
  size_t n = 0;
  fields[n++] = payload;
  for (size_t i = 0; i < len; i++)
    if (!payload[i]) fields[n++] = payload + i + 1;
  payload[len] = '\0';
  if (n < 3 || (size_t)atol(fields[2]) > n - 3) {
    emitf("F %llu %d\n", id, EINVAL);
    free(fields);
    return;
  }
  char *file = fields[0], *cwd = fields[1];
  size_t argc = (size_t)atol(fields[2]);
  // argv: file, then the arguments; envp: the rest. fields[2] (argc) is overwritten by argv[0].
  char **argv = fields + 2;
  argv[0] = file;
  char **envp = malloc((n - 3 - argc + 1) * sizeof *envp);
  if (!envp) abort();
  memcpy(envp, fields + 3 + argc, (n - 3 - argc) * sizeof *envp);
  envp[n - 3 - argc] = NULL;
  // argv ends where envp's entries start: terminate it (they were copied above)
  fields[3 + argc] = NULL;

  int o[2], e[2];
  if (pipe2(o, O_CLOEXEC) < 0) {
    emitf("F %llu %d\n", id, errno);
    goto done;
  }
  if (pipe2(e, O_CLOEXEC) < 0) {
    emitf("F %llu %d\n", id, errno);
    close(o[0]);
    close(o[1]);
    goto done;
  }
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, devnull, 0);
  posix_spawn_file_actions_adddup2(&fa, o[1], 1);
  posix_spawn_file_actions_adddup2(&fa, e[1], 2);
  if (*cwd) posix_spawn_file_actions_addchdir_np(&fa, cwd);
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid;
  int err = posix_spawn(&pid, file, &fa, &attr, argv, envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(o[1]);
  close(e[1]);
  fcntl(o[0], F_SETFL, O_NONBLOCK); // the read ends only: drain() reads what is there
  fcntl(e[0], F_SETFL, O_NONBLOCK);
  if (err) {
    close(o[0]);
    close(e[0]);
    emitf("F %llu %d\n", id, err);
    goto done;
  }
  struct job *job = calloc(1, sizeof *job);
  if (!job) abort();
  job->id = id;
  job->pid = pid;
  job->paused = paused;
  job->fd[OUT] = o[0];
  job->fd[ERR] = e[0];
  job->fd[PIDFD] = (int)syscall(SYS_pidfd_open, pid, 0);
  job->next = jobs;
  jobs = job;
  set_owner(o[0], job, OUT);
  set_owner(e[0], job, ERR);
  if (job->fd[PIDFD] >= 0) {
    fcntl(job->fd[PIDFD], F_SETFD, FD_CLOEXEC);
    set_owner(job->fd[PIDFD], job, PIDFD);
  }
  emitf("S %llu %d\n", id, pid);
  arm(job);
done:
  free(envp);
  free(fields);
}

static struct job *job_of_id(unsigned long long id) {
  for (struct job *j = jobs; j; j = j->next)
    if (j->id == id) return j;
  return NULL;
}

static void request(char op, unsigned long long id, char *payload, size_t len) {
  if (op == 'P' || op == 'Q') {
    start(id, payload, len, op == 'Q');
    return;
  }
  struct job *job = job_of_id(id);
  if (!job) return;
  if (op == 'H' || op == 'R') {
    job->paused = op == 'H';
    arm(job);
  } else if (op == 'K') {
    pipes_closed(job);
  }
}

static void read_requests(void) {
  grow(&in, &in_cap, in_len + 65536 + 1);
  ssize_t n = read(STDIN_FILENO, in + in_len, 65536);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) abandon();
  in_len += (size_t)n;
  size_t at = 0;
  for (;;) {
    char *nl = memchr(in + at, '\n', in_len - at);
    if (!nl) break;
    char op;
    unsigned long long id;
    size_t len;
    int head;
    *nl = '\0';
    if (sscanf(in + at, "%c %llu %zu%n", &op, &id, &len, &head) != 3 || in + at + head != nl) abandon(); // not the agent
    *nl = '\n';
    size_t body = (size_t)(nl - in) + 1;
    if (in_len - body < len) break;
    char saved = in[body + len];
    request(op, id, in + body, len);
    in[body + len] = saved; // start() terminates the payload in place
    at = body + len;
  }
  memmove(in, in + at, in_len - at);
  in_len -= at;
}

static void descendants(pid_t **list, size_t *len) {
  size_t cap = 0;
  *len = 0;
  *list = NULL;
  children_of(getpid(), list, len, &cap);
  for (size_t i = 0; i < *len; i++) children_of((*list)[i], list, len, &cap);
}

static void signal_all(int sig) {
  for (struct job *j = jobs; j; j = j->next)
    if (!j->reaped) kill(-j->pid, sig);
  pid_t *all;
  size_t n;
  descendants(&all, &n);
  for (size_t i = 0; i < n; i++) kill(all[i], sig);
  free(all);
}

static int any_descendant(void) {
  pid_t *all;
  size_t n;
  descendants(&all, &n);
  free(all);
  return n > 0;
}

// The agent is gone (end of file on stdin): nobody watches the jobs any more. Every process under
// this one gets SIGTERM, SIGKILL after the grace, then this process exits.
static void abandon(void) {
  if (any_descendant()) {
    signal_all(SIGTERM);
    for (long i = 0; i < grace_ms / 20; i++) {
      while (waitpid(-1, NULL, WNOHANG) > 0) {
      }
      if (!any_descendant()) break;
      struct timespec t = {0, 20 * 1000 * 1000};
      nanosleep(&t, NULL);
    }
    signal_all(SIGKILL);
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
  }
  exit(0);
}

static void ready(struct job *job, enum kind k) {
  if (k == PIDFD) {
    unwatch(job, PIDFD); // it has exited: reap_all collects it
    return;
  }
  ssize_t n = read(job->fd[k], buf, sizeof buf);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n > 0) {
    emitf("D %llu %c %zd\n", job->id, k == OUT ? 'o' : 'e', n);
    emit(buf, (size_t)n);
    return;
  }
  unwatch(job, k);
  if (job->fd[OUT] < 0 && job->fd[ERR] < 0) pipes_closed(job);
}

static void on_child(int sig) { (void)sig; }

int main(int argc, char **argv) {
  if (argc > 1) grace_ms = atol(argv[1]);
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = {.sa_handler = on_child};
  sigaction(SIGCHLD, &sa, NULL);
  // SIGCHLD is taken only inside epoll_pwait, so an exit cannot fall between reap_all and the wait
  sigset_t chld, waiting;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &waiting);
  sigdelset(&waiting, SIGCHLD);
  subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0;
  devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (devnull < 0 || epfd < 0) return 1;
  int stdin_polled = 0;
  interest(STDIN_FILENO, 1, &stdin_polled);
  emitf("Y %d\n", getpid());
  flush_out();
  struct epoll_event events[256];
  for (;;) {
    // output held back waits at most until the next millisecond
    int n = epoll_pwait(epfd, events, 256, out_len ? 1 : 1000, &waiting);
    int request_ready = 0;
    // a job's output before its exit
    for (int pass = 0; pass < 2; pass++)
      for (int i = 0; i < n; i++) {
        int fd = events[i].data.fd;
        if (fd == STDIN_FILENO) {
          request_ready = 1;
          continue;
        }
        if (fd >= owners_len || !owners[fd].job) continue;
        if ((owners[fd].kind == PIDFD) != (pass == 1)) continue;
        ready(owners[fd].job, owners[fd].kind);
      }
    if (request_ready) read_requests();
    reap_all();
    if (urgent || out_len >= COALESCE_MAX || monotonic_ns() - flushed_at >= COALESCE_NS) flush_out();
  }
}
