/*
 * commands.h: the IMAP command handlers outside session.c, and the
 * capabilities they make complete.
 *
 * Each handler gets the session (its command in s->cmd, already checked
 * for the state) and ends the command with cmd_done() now or when its
 * requests to tern-stored have been answered.
 *
 * folder.c: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB,
 * STATUS, GETQUOTA, GETQUOTAROOT, SETQUOTA.  fetch.c: FETCH, STORE.
 * msgcmd.c: APPEND, CLOSE, UNSELECT, EXPUNGE, COPY, MOVE, SEARCH, SORT,
 * THREAD.  mbox.c: SELECT, EXAMINE.
 */
#ifndef TERN_IMAPD_COMMANDS_H
#define TERN_IMAPD_COMMANDS_H

#include "compat.h"

struct session;
struct imap_cmd;

/* After login, besides IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE
 * IDLE, APPENDLIMIT= and COMPRESS=DEFLATE (session.c). */
#define COMMANDS_CAPABILITIES						\
	"NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN SPECIAL-USE "		\
	"CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS CONDSTORE "	\
	"QRESYNC ESEARCH SEARCHRES SORT THREAD=ORDEREDSUBJECT "		\
	"THREAD=REFERENCES QUOTA QUOTA=RES-STORAGE "	\
	"STATUS=SIZE WITHIN UTF8=ACCEPT BINARY"

void cmd_create(struct session *s, struct imap_cmd *cmd);
void cmd_delete(struct session *s, struct imap_cmd *cmd);
void cmd_rename(struct session *s, struct imap_cmd *cmd);
void cmd_subscribe(struct session *s, struct imap_cmd *cmd);
void cmd_list(struct session *s, struct imap_cmd *cmd);
void cmd_status(struct session *s, struct imap_cmd *cmd);
void cmd_getquota(struct session *s, struct imap_cmd *cmd);

void cmd_fetch(struct session *s, struct imap_cmd *cmd);
void cmd_store(struct session *s, struct imap_cmd *cmd);

void cmd_append(struct session *s, struct imap_cmd *cmd);
void cmd_close(struct session *s, struct imap_cmd *cmd);
void cmd_expunge(struct session *s, struct imap_cmd *cmd);
void cmd_copy(struct session *s, struct imap_cmd *cmd);
void cmd_search(struct session *s, struct imap_cmd *cmd);
void cmd_sort(struct session *s, struct imap_cmd *cmd);
void cmd_thread(struct session *s, struct imap_cmd *cmd);

#endif
