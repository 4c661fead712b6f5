// floor replica: server (blocking) and client, same shape as bench/floor.c's cold floor
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/mman.h>
static int sendfd(int s, int fd, const char *buf, int len){
  union { struct cmsghdr a; char b[CMSG_SPACE(sizeof(int))]; } c; struct iovec iov={(void*)buf,len};
  struct msghdr m={.msg_iov=&iov,.msg_iovlen=1,.msg_control=c.b,.msg_controllen=sizeof c.b};
  struct cmsghdr *cm=CMSG_FIRSTHDR(&m); cm->cmsg_level=SOL_SOCKET; cm->cmsg_type=SCM_RIGHTS; cm->cmsg_len=CMSG_LEN(sizeof(int)); memcpy(CMSG_DATA(cm),&fd,sizeof fd);
  return sendmsg(s,&m,MSG_NOSIGNAL);
}
int main(int argc,char**argv){
  struct sockaddr_un sa={.sun_family=AF_UNIX}; strcpy(sa.sun_path,argv[2]);
  char buf[256]={0}, rep[104]={0};
  if(!strcmp(argv[1],"server")){
    int mfd=memfd_create("x",MFD_CLOEXEC); ftruncate(mfd,4096);
    int l=socket(AF_UNIX,SOCK_STREAM|SOCK_CLOEXEC,0); unlink(argv[2]); bind(l,(void*)&sa,sizeof sa); listen(l,128);
    for(;;){ int s=accept4(l,0,0,SOCK_CLOEXEC); if(s<0) continue;
      for(;;){ ssize_t k=recv(s,buf,sizeof buf,0); if(k<=0) break; sendfd(s,mfd,rep,sizeof rep);} close(s);}
  }
  int n=atoi(argv[3]);
  for(int i=0;i<n;i++){
    int s=socket(AF_UNIX,SOCK_STREAM|SOCK_CLOEXEC,0); if(connect(s,(void*)&sa,sizeof sa)<0){perror("connect");return 1;}
    send(s,buf,63,MSG_NOSIGNAL);
    union { struct cmsghdr a; char b[CMSG_SPACE(sizeof(int))]; } c; struct iovec iov={buf,176};
    struct msghdr m={.msg_iov=&iov,.msg_iovlen=1,.msg_control=c.b,.msg_controllen=sizeof c.b};
    if(recvmsg(s,&m,MSG_CMSG_CLOEXEC)<=0) return 1; int fd; memcpy(&fd,CMSG_DATA(CMSG_FIRSTHDR(&m)),sizeof fd);
    void*p=mmap(0,4096,PROT_READ|PROT_WRITE,MAP_SHARED,fd,0); munmap(p,4096); close(s); close(fd);
  }
  return 0;
}
