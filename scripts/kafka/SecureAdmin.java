// SCRAM users and ACLs on the secure profile's broker (scripts/services.sh, SPCWATCH_KAFKA_SECURE=1).
//
// Run as a single-file source program on the Kafka jars services.sh already fetched, so the
// secure profile needs no Kafka distribution, no kafka-configs.sh and no kafka-acls.sh:
//
//   java -cp '<kafka libs>/*' SecureAdmin.java ADMIN.properties user NAME [PREFIX [topics|groups]]
//
// The user's password is read from the environment variable SPCWATCH_KAFKA_USER_PASSWORD
// (never from the command line, where ps would show it). Creates or updates the SCRAM-SHA-512
// credential of NAME; with PREFIX, allows NAME every operation on the topics and consumer groups
// whose names start with PREFIX ('*': all of them; '=NAME': the one named NAME; several, comma-
// separated), or only on the topics or only on the groups.
// ADMIN.properties is an AdminClient configuration for a super user (services.sh writes one).
import java.io.FileReader;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class SecureAdmin {
    public static void main(String[] args) throws Exception {
        if (args.length < 3 || !args[1].equals("user") || args.length > 5) {
            System.err.println("usage: SecureAdmin ADMIN.properties user NAME [PREFIX [topics|groups]]");
            System.exit(2);
        }
        String name = args[2];
        String password = System.getenv("SPCWATCH_KAFKA_USER_PASSWORD");
        if (password == null || password.isEmpty()) {
            System.err.println("SecureAdmin: set SPCWATCH_KAFKA_USER_PASSWORD to the user's password");
            System.exit(2);
        }
        String prefix = args.length > 3 ? args[3] : null;
        String only = args.length > 4 ? args[4] : "";
        if (!only.isEmpty() && !only.equals("topics") && !only.equals("groups")) {
            System.err.println("SecureAdmin: the last argument is topics or groups, got " + only);
            System.exit(2);
        }
        Properties config = new Properties();
        try (FileReader reader = new FileReader(args[0])) {
            config.load(reader);
        }
        try (Admin admin = Admin.create(config)) {
            admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion(
                    name, new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), password)))
                .all().get(60, TimeUnit.SECONDS);
            String grants = "no ACLs";
            if (prefix != null) {
                List<AclBinding> acls = new ArrayList<>();
                List<String> names = new ArrayList<>();
                AccessControlEntry allow = new AccessControlEntry(
                    "User:" + name, "*", AclOperation.ALL, AclPermissionType.ALLOW);
                for (String item : prefix.split(",")) {
                    boolean literal = item.equals("*") || item.startsWith("=");
                    String resource = item.startsWith("=") ? item.substring(1) : item;
                    PatternType pattern = literal ? PatternType.LITERAL : PatternType.PREFIXED;
                    for (Map.Entry<ResourceType, String> kind : Map.of(
                            ResourceType.TOPIC, "topics", ResourceType.GROUP, "groups").entrySet()) {
                        if (only.isEmpty() || only.equals(kind.getValue())) {
                            acls.add(new AclBinding(new ResourcePattern(kind.getKey(), resource, pattern), allow));
                        }
                    }
                    names.add(item.equals("*") ? "(every name)" : resource + (literal ? "" : "*"));
                }
                admin.createAcls(acls).all().get(60, TimeUnit.SECONDS);
                grants = "ALL on " + (only.isEmpty() ? "topics and groups" : only)
                    + (prefix.equals("*") ? " (every name)" : " named " + String.join(", ", names));
            }
            System.out.println("SecureAdmin: SCRAM-SHA-512 user " + name + ", " + grants);
        }
    }
}
