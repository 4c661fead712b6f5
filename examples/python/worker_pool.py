#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""worker_pool: the seed guide's worker pool. Workers get the region (its fd over a socket, or its name in
iomemd with --socket), read work from it, write results back into it, and answer with offsets only."""

import argparse
import os
import socket
import sys

import iomem
from _shared import make_region, parse_args


class SharedMemoryWorkerPool:
    def __init__(self, args: argparse.Namespace, worker_count: int = 4, buffer_size: int = 1024 * 1024) -> None:
        self.args = args
        self.handle = make_region(args, buffer_size)
        self.buffer = memoryview(self.handle)
        self.workers: list[int] = []
        self.sockets: list[socket.socket] = []
        for worker_id in range(worker_count):
            parent_socket, child_socket = socket.socketpair()
            pid = os.fork()
            if pid == 0:
                parent_socket.close()
                for s in self.sockets:
                    s.close()
                code = self.worker_process(child_socket, worker_id)
                os._exit(code)
            child_socket.close()
            self.workers.append(pid)
            self.sockets.append(parent_socket)
            if not args.socket:  # send the shared memory to the worker
                socket.send_fds(parent_socket, [b"fd"], [self.handle.fileno()])
        self.files = [s.makefile("rwb", buffering=0) for s in self.sockets]

    def submit_work(self, worker: int, data: bytes, offset: int) -> str:
        self.buffer[offset:offset + len(data)] = data  # work data goes into shared memory
        self.files[worker].write(f"WORK:{offset}:{len(data)}\n".encode())
        _, result_text, length_text = self.files[worker].readline().decode().strip().split(":")
        result_offset, length = int(result_text), int(length_text)
        return bytes(self.buffer[result_offset:result_offset + length]).decode()

    def shutdown(self) -> list[int]:
        codes = []
        for f in self.files:
            f.write(b"QUIT\n")
        for pid in self.workers:
            codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        for f, s in zip(self.files, self.sockets):
            f.close()
            s.close()
        self.buffer.release()
        self.handle.close()
        return codes

    def worker_process(self, sock: socket.socket, worker_id: int) -> int:
        if self.args.socket:  # by name, through a connection of its own
            with iomem.Client(self.args.socket) as client:
                shared = client.open(self.args.name)
        else:
            fds = socket.recv_fds(sock, 16, 1)[1]
            shared = iomem.Region.from_fd(fds[0])
            os.close(fds[0])
        with shared, memoryview(shared) as buffer, sock.makefile("rwb", buffering=0) as f:
            print(f"worker {worker_id} started", flush=True)
            for line in f:
                command = line.decode().strip()
                if command == "QUIT":
                    break
                _, offset_text, length_text = command.split(":")
                offset, length = int(offset_text), int(length_text)
                result = bytes(buffer[offset:offset + length])[::-1]  # process: reverse it
                result_offset = offset + 10000
                buffer[result_offset:result_offset + len(result)] = result
                f.write(f"DONE:{result_offset}:{len(result)}\n".encode())
        print(f"worker {worker_id} finished", flush=True)
        return 0


args = parse_args(__doc__)
pool = SharedMemoryWorkerPool(args, worker_count=3)
results = [pool.submit_work(0, b"Hello World", 0), pool.submit_work(1, b"Shared Memory", 100),
           pool.submit_work(2, b"Zero Copy IPC", 200)]
for i, result in enumerate(results):
    print(f'result from worker {i}: "{result}"')
codes = pool.shutdown()
sys.exit(0 if results == ["dlroW olleH", "yromeM derahS", "CPI ypoC oreZ"] and codes == [0, 0, 0] else 1)
