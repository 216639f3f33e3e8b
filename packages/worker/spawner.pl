#!/usr/bin/perl
# The worker agent's spawner (packages/worker/src/spawn.ts, ProcessSpawner): starts job processes
# and relays their output and exit. fork() copies the page tables of the process that calls it and
# the agent then pays a copy-on-write fault for every page it touches until the child has exec'd:
# from a Node process of 110 MiB that is 2 ms of CPU per job, from this one a tenth of that.
# Only perl-base modules, which every Debian and Ubuntu system (and node:*-bookworm-slim) has.
#
# Requests on stdin, each "<op> <id> <length>\n" followed by <length> bytes:
#   P  spawn: file \0 cwd \0 argc \0 argv[1..argc] \0 "KEY=value"... (NUL-separated; cwd "" = inherit)
#   Q  spawn as P, its pipes paused (as after H)
#   H  pause reading the job's pipes    R  resume    K  close them
# Events on stdout, in order for each job, S or F first:
#   S <id> <pid>                       started (exec succeeded)
#   F <id> <errno>                     could not start (chdir or exec failed); nothing follows
#   D <id> <o|e> <length>\n<bytes>     output read from stdout (o) or stderr (e)
#   X <id> <code> <signal> <alone>     the main process ended (code -1 when killed by a signal);
#                                      alone 1: no process of any ended job is left (below); what
#                                      it wrote before it ended is out before this (unless paused)
#   C <id>                             both pipes reached end of file (or were closed by K)
#   Y <pid>                            once, when the script is running
# Exit is seen through a pidfd (Linux 5.3+) in the same wait as the pipes (epoll), so no signal can
# fall between a check and the wait; without pidfd, children are polled every 10 ms.
# This process is a child subreaper (Linux 3.4+): whatever a job leaves behind (a background or
# setsid child, a double-forked daemon) becomes its child when its parent dies. So when every
# child is a job still running, nothing is left of the jobs that ended, and the agent can skip
# searching /proc for leftovers; orphans are reaped here when they exit.
#
# Argument: the kill grace in ms (default 5000). When the agent goes away (end of file on stdin)
# while jobs run, nobody watches them any more and the scheduler may run them again elsewhere: every
# process under this one gets SIGTERM, SIGKILL after the grace, and then this process exits.
use strict;
use warnings;

# Every fork copies the page tables of this process, and this process then pays a copy-on-write
# fault for each page it writes while a child has not exec'd yet: so the module POSIX (2 MiB of
# anonymous memory, most of this process's) is loaded only where the system calls below are unknown.
# The architecture is the e_machine of perl's own ELF header: 62 x86_64, 183 aarch64.
my $linux = $^O eq 'linux';
# struct epoll_event is packed on x86_64 (12 bytes), aligned on aarch64 (16).
my %SYSCALLS = (
    62 => {
        prctl => 157, clone => 56, execve => 59, setsid => 112, dup3 => 292, exit_group => 231, fcntl => 72,
        epoll_create1 => 291, epoll_ctl => 233, epoll_pwait => 281, epoll_event => 'L Q', close => 3,
    },
    183 => {
        prctl => 167, clone => 220, execve => 221, setsid => 157, dup3 => 24, exit_group => 94, fcntl => 25,
        epoll_create1 => 20, epoll_ctl => 21, epoll_pwait => 22, epoll_event => 'L x4 Q', close => 57,
    },
);
my $sys = $linux ? $SYSCALLS{ elf_machine() } : undef;
require POSIX unless $sys;
my $WNOHANG = $sys ? 1 : POSIX::WNOHANG();
my ($SYS_execve, $SYS_setsid, $SYS_dup3, $SYS_exit_group) = $sys ? @$sys{qw(execve setsid dup3 exit_group)} : ();
my $SYS_pidfd_open = 434;    # the same number on every architecture Linux added it to
my $have_pidfd = $linux;
my $PR_SET_CHILD_SUBREAPER = 36;
my ($CLONE_VFORK, $SIGCHLD) = (0x4000, 17);
my $subreaper = $sys && syscall($sys->{prctl}, $PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0;
# Readiness comes from epoll where its system calls are known, else from select(). A select() over
# every job's descriptors adds and removes a wait-queue entry for each of them on every wake-up:
# with 50 jobs printing, that was most of this process's CPU.
my ($EPOLL_CLOEXEC, $EPOLL_CTL_ADD, $EPOLL_CTL_DEL, $EPOLLIN, $MAX_EVENTS) = (0x80000, 1, 2, 1, 256);
my $epoll = $sys ? syscall($sys->{epoll_create1}, $EPOLL_CLOEXEC) : -1;
my $event_size = $sys ? length pack($sys->{epoll_event}, 0, 0) : 0;
my %polled;                  # fileno => 1 while in the epoll set
my %jobs;                    # id => job
my %by_pid;                  # pid => job, until reaped
my %owner;                   # fileno => [job, kind]: kind is o, e (output), s (exec status), p (pidfd)
my %ORDER = (s => 0, o => 1, e => 2, p => 3);
my $grace_ms = $ARGV[0] // 5000;
my $in = '';
my $out = '';
my $rin = '';                # select()'s set, without epoll
binmode STDIN;
binmode STDOUT;
open(my $devnull, '<', '/dev/null') or die "/dev/null: $!";

sub elf_machine {
    open(my $fh, '<', '/proc/self/exe') or return 0;
    (sysread($fh, my $head, 20) // 0) == 20 or return 0;
    return unpack('v', substr($head, 18, 2));
}

sub emit { $out .= $_[0] }

sub flush_out {
    while (length $out) {
        my $n = syswrite(STDOUT, $out);
        if (!defined $n) { next if $!{EINTR}; exit 0 }    # the agent is gone
        substr($out, 0, $n, '');
    }
}

sub watch { my ($job, $kind, $fh) = @_; $job->{$kind} = $fh; $owner{ fileno $fh } = [ $job, $kind ] }

# Whether the descriptor is waited on. The set is kept up to date here rather than rebuilt on every
# round: with 50 jobs printing a line each 10 ms, rebuilding it from all their descriptors was most
# of this process's CPU.
sub interest {
    my ($fd, $on) = @_;
    if ($epoll < 0) { vec($rin, $fd, 1) = $on ? 1 : 0; return }
    return if !$on == !$polled{$fd};
    if (syscall($sys->{epoll_ctl}, $epoll, $on ? $EPOLL_CTL_ADD : $EPOLL_CTL_DEL, $fd, pack($sys->{epoll_event}, $EPOLLIN, $fd)) != 0) {
        # a descriptor epoll does not take (stdin a file or /dev/null): select() from now on
        syscall($sys->{close}, $epoll);
        $epoll = -1;
        vec($rin, $_, 1) = 1 for keys %polled;
        vec($rin, $fd, 1) = $on ? 1 : 0;
        return;
    }
    if ($on) { $polled{$fd} = 1 } else { delete $polled{$fd} }
}

# The descriptors ready to read (end of file and errors included), none once the timeout (s) passed.
sub ready_fds {
    my $timeout = shift;
    if ($epoll < 0) {
        select(my $rout = $rin, undef, undef, $timeout) > 0 or return ();
        my $bits = unpack('b*', $rout);    # in vec()'s order: character i is descriptor i
        my @fds;
        for (my $fd = index($bits, '1'); $fd >= 0; $fd = index($bits, '1', $fd + 1)) { push @fds, $fd }
        return @fds;
    }
    my $events = "\0" x ($event_size * $MAX_EVENTS);
    my $n = syscall($sys->{epoll_pwait}, $epoll, $events, $MAX_EVENTS, int($timeout * 1000), 0, 8);
    return map { (unpack($sys->{epoll_event}, substr($events, $_ * $event_size, $event_size)))[1] } 0 .. $n - 1;
}

# A job's output and exit are watched only after its S or F (the agent knows the job once it has
# started), its output not while it is paused.
sub arm {
    my $job = shift;
    my $known = $job->{started} || $job->{failed};
    for my $kind (qw(o e s p)) {
        my $fh = $job->{$kind} or next;
        my $on = $kind eq 's' || ($known && ($kind eq 'p' || !$job->{paused}));
        interest(fileno $fh, $on);
    }
}

sub unwatch {
    my ($job, $kind) = @_;
    my $fh = delete $job->{$kind} or return;
    interest(fileno $fh, 0);    # before close: the number will be reused
    delete $owner{ fileno $fh };
    close $fh;
}

sub forget {
    my $job = shift;
    return unless $job->{exited} && $job->{closed};
    unwatch($job, $_) for qw(o e s p);
    delete $jobs{ $job->{id} };
}

sub pipes_closed {
    my $job = shift;
    return if $job->{closed};
    $job->{closed} = 1;
    unwatch($job, $_) for qw(o e);
    emit("C $job->{id}\n") unless $job->{failed};
    forget($job);
}

# 1 when every child of this process is a job that has not been reaped
sub alone {
    return 0 unless $subreaper;
    open(my $fh, '<', "/proc/$$/task/$$/children") or return 0;
    my $children = <$fh> // '';
    for my $pid (split ' ', $children) { return 0 unless $by_pid{$pid} }
    return 1;
}

# What the job's pipes hold now, as far as they are not paused and can be read without waiting:
# once it has exited, what it wrote is all there, and goes out before its exit, which a reap
# may see first.
sub drain {
    my $job = shift;
    return if $job->{paused} || !$job->{nonblocking};
    for my $kind (qw(o e)) {
        for (1 .. 16) {
            my $fh = $job->{$kind} or last;
            my $n = sysread($fh, my $data, 65536);
            if ($n) { emit("D $job->{id} $kind $n\n$data"); next }
            unwatch($job, $kind) if defined $n;    # end of file
            last;
        }
    }
}

# once the job's S or F is out (its exit may be collected before its exec status is read)
sub exited {
    my $job = shift;
    drain($job) unless $job->{failed};
    $job->{exited} = 1;
    unwatch($job, 'p');
    my $status = $job->{status};
    my ($code, $signal) = ($status & 127) ? (-1, $status & 127) : ($status >> 8, 0);
    emit("X $job->{id} $code $signal " . alone() . "\n") unless $job->{failed};
    if ($job->{o} || $job->{e}) { forget($job) } else { pipes_closed($job) }
}

sub reap_all {
    while ((my $pid = waitpid(-1, $WNOHANG)) > 0) {
        my $job = delete $by_pid{$pid} or next;    # an orphan a job left: nothing to report
        $job->{status} = $?;
        exited($job) if $job->{started} || $job->{failed};
    }
}

sub start {
    my ($id, $payload, $paused) = @_;
    my @f = split /\0/, $payload, -1;
    my ($file, $cwd, $argc) = splice(@f, 0, 3);
    my @args = splice(@f, 0, $argc);
    # argv and envp for execve(2), packed here: what the child does between fork and exec is
    # charged to the job, and rebuilding %ENV there (perl's exec takes its environment from it)
    # was a quarter of a `true` job's CPU. The pointers stay valid in the child: @args and @f live.
    my ($argv, $envp) = $sys ? (pack('p*', $file, @args, undef), pack('p*', @f, undef)) : ();
    my ($or, $ow, $er, $ew, $sr, $sw);
    unless (pipe($or, $ow) && pipe($er, $ew) && pipe($sr, $sw)) { emit("F $id " . ($! + 0) . "\n"); return }
    # clone(CLONE_VFORK) is fork() that holds this process until the child has exec'd (or given up).
    # After a plain fork this process ran on while the child had not exec'd yet, and each page it
    # wrote was copied and flushed from the other CPU's TLB: most of its CPU per job on a VM.
    my $pid = $sys ? syscall($sys->{clone}, $CLONE_VFORK | $SIGCHLD, 0, 0, 0, 0) : fork();
    if (!defined $pid || $pid < 0) { emit("F $id " . ($! + 0) . "\n"); return }
    if ($pid == 0) {
        # $sw is close-on-exec (like every descriptor perl opens above 2): end of file on $sr means
        # the exec succeeded, an errno means it did not.
        if ($sys) {
            syscall($SYS_setsid);
            syscall($SYS_dup3, fileno $devnull, 0, 0);
            syscall($SYS_dup3, fileno $ow, 1, 0);
            syscall($SYS_dup3, fileno $ew, 2, 0);
            if (length $cwd && !chdir $cwd) { syswrite($sw, $! + 0); syscall($SYS_exit_group, 127) }
            syscall($SYS_execve, $file, $argv, $envp);
            syswrite($sw, $! + 0);
            syscall($SYS_exit_group, 127);
        }
        POSIX::setsid();
        POSIX::dup2(fileno $devnull, 0);
        POSIX::dup2(fileno $ow, 1);
        POSIX::dup2(fileno $ew, 2);
        if (length $cwd && !chdir $cwd) { syswrite($sw, $! + 0); POSIX::_exit(127) }
        %ENV = map { split /=/, $_, 2 } @f;
        { no warnings 'exec'; exec { $file } $file, @args; }
        syswrite($sw, $! + 0);
        POSIX::_exit(127);
    }
    close $ow;
    close $ew;
    close $sw;
    # the read ends only (F_SETFL, O_NONBLOCK): drain() reads what is there
    my $nonblocking = $sys && !grep { syscall($sys->{fcntl}, fileno $_, 4, 0x800) != 0 } $or, $er;
    my $job = { id => $id, pid => $pid, started => 0, paused => $paused ? 1 : 0, nonblocking => $nonblocking };
    $jobs{$id} = $job;
    $by_pid{$pid} = $job;
    watch($job, 'o', $or);
    watch($job, 'e', $er);
    watch($job, 's', $sr);
    my $pidfd = $have_pidfd ? syscall($SYS_pidfd_open, $pid, 0) : -1;
    if ($pidfd >= 0) {
        open(my $pfh, '<&=', $pidfd) or die "pidfd: $!";
        watch($job, 'p', $pfh);
    } else {
        $have_pidfd = 0;
    }
    arm($job);
}

sub request {
    my ($op, $id, $payload) = @_;
    return start($id, $payload, $op eq 'Q') if $op eq 'P' || $op eq 'Q';
    my $job = $jobs{$id} or return;
    if ($op eq 'H') { $job->{paused} = 1; arm($job) }
    elsif ($op eq 'R') { $job->{paused} = 0; arm($job) }
    elsif ($op eq 'K') { pipes_closed($job) }
}

sub read_requests {
    my $n = sysread(STDIN, $in, 65536, length $in);
    return if !defined $n && $!{EINTR};
    abandon() if !$n;
    while ($in =~ /\A(\w) (\d+) (\d+)\n/) {
        my ($op, $id, $len) = ($1, $2, $3);
        my $head = length($1) + length($2) + length($3) + 3;
        last if length($in) < $head + $len;
        my $payload = substr($in, $head, $len);
        substr($in, 0, $head + $len, '');
        request($op, $id, $payload);
    }
}

# Every process under this one: the jobs, what they started, and (as subreaper) what they left.
sub descendants {
    my @todo = ($$);
    my @all;
    while (defined(my $pid = shift @todo)) {
        for my $task (glob "/proc/$pid/task/*") {
            open(my $fh, '<', "$task/children") or next;
            my @children = split ' ', (<$fh> // '');
            push @all, @children;
            push @todo, @children;
        }
    }
    return @all;
}

sub signal_all {
    my $signal = shift;
    kill $signal, map { -$_ } keys %by_pid;    # the process group of each job not yet reaped
    kill $signal, descendants();
}

sub abandon {
    $SIG{PIPE} = 'IGNORE';    # no more forks, and no one reads what is left to say
    if (%by_pid || descendants()) {
        signal_all('TERM');
        for (1 .. $grace_ms / 20) {
            1 while waitpid(-1, $WNOHANG) > 0;
            last unless descendants();
            select(undef, undef, undef, 0.02);
        }
        signal_all('KILL');
        1 while waitpid(-1, $WNOHANG) > 0;
    }
    exit 0;
}

sub ready {
    my ($job, $kind, $fh) = @_;
    if ($kind eq 's') {
        my $n = sysread($fh, my $errno, 16);
        return if !defined $n && $!{EINTR};
        unwatch($job, 's');
        if ($n) {
            $job->{failed} = 1;
            emit("F $job->{id} $errno\n");
        } else {
            $job->{started} = 1;
            emit("S $job->{id} $job->{pid}\n");
        }
        arm($job);
        exited($job) if defined $job->{status};
    } elsif ($kind eq 'p') {
        unwatch($job, 'p');    # it has exited: reap_all collects it
    } else {
        my $n = sysread($fh, my $data, 65536);
        return if !defined $n && ($!{EINTR} || $!{EAGAIN});
        if ($n) {
            emit("D $job->{id} $kind $n\n$data") unless $job->{failed};
            return;
        }
        unwatch($job, $kind);
        pipes_closed($job) unless $job->{o} || $job->{e};
    }
}

# An orphan's exit interrupts select(): reaped at once, it does not linger as a zombie. Should the
# signal land between reap_all() and select(), the next wake-up (at most a second later) reaps it.
$SIG{CHLD} = sub { };
emit("Y $$\n");
flush_out();
interest(fileno(STDIN), 1);
for (;;) {
    my @ready = ready_fds($have_pidfd ? 1 : 0.01);
    my @fds = grep { $owner{$_} } @ready;
    # a job's S before its output, its output before its exit
    @fds = sort { $ORDER{ $owner{$a}[1] } <=> $ORDER{ $owner{$b}[1] } || $a <=> $b } @fds if @fds > 1;
    for my $fd (@fds) {
        my $o = $owner{$fd} or next;
        ready(@$o, $o->[0]{ $o->[1] });
    }
    read_requests() if grep { $_ == fileno(STDIN) } @ready;
    reap_all();
    flush_out();
}
