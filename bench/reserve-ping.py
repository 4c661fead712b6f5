#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# reserve-ping: the PING round trips of one connection while N others each CREATE a RESERVEd region of SIZE MiB
# at once (the wire by hand, as tests/integration/wire-smoke.py). Usage: bench/reserve-ping.py IOMEMD N SIZE_MIB
# Needs N * SIZE MiB of free memory for a moment. Results: docs/reliability.md ("RESERVE off the event loop").
import os, socket, struct, subprocess, sys, tempfile, time, select
MAGIC=0x444D4F49
HELLO, PING, CREATE, DELETE = 0x0001, 0x0003, 0x0010, 0x0016
def string(s):
    b=s.encode(); return struct.pack("<H",len(b))+b+b"\0"
def frame(op,rid,pl): return struct.pack("<IBBHIIHH",MAGIC,1,0,op,rid,len(pl),0,0)+pl
def recv(s):
    data,anc,_,_=s.recvmsg(20, socket.CMSG_SPACE(16))
    for lvl,k,c in anc:
        for i in range(0,len(c)-len(c)%4,4): os.close(struct.unpack("<i",c[i:i+4])[0])
    _,_,flags,op,rid,length,_,_=struct.unpack("<IBBHIIHH",data)
    pl=b""
    while len(pl)<length: pl+=s.recv(length-len(pl))
    return op,rid,flags
daemon,n,size=sys.argv[1],int(sys.argv[2]),int(sys.argv[3])<<20
d=tempfile.mkdtemp(); path=os.path.join(d,"s")
p=subprocess.Popen([daemon,"--socket",path,"--log-level","warning"])
while not os.path.exists(path): time.sleep(0.02)
def conn():
    s=socket.socket(socket.AF_UNIX); s.connect(path); s.sendall(frame(HELLO,1,struct.pack("<HHI",1,1,0))); recv(s); return s
pinger=conn(); rs=[conn() for _ in range(n)]
lat=[]
t0=time.monotonic()
for i,s in enumerate(rs): s.sendall(frame(CREATE,2,struct.pack("<QIIIHH",size,0x10,0,0,0,0)+string("m%d"%i)))
pending=set(rs); done_at=None
while pending:
    t=time.monotonic(); pinger.sendall(frame(PING,9,struct.pack("<Q",1))); recv(pinger); lat.append(time.monotonic()-t)
    r,_,_=select.select(list(pending),[],[],0.002)
    for s in r: recv(s); pending.discard(s)
total=time.monotonic()-t0
print("%s: %d x %d MiB reserved in %.2f s; %d PINGs meanwhile, max %.1f ms, median %.2f ms" % (daemon, n, size>>20, total, len(lat), 1000*max(lat), 1000*sorted(lat)[len(lat)//2]))
for i,s in enumerate(rs): s.sendall(frame(DELETE,3,string("m%d"%i))); recv(s)
p.terminate(); p.wait()
