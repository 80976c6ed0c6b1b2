// meterd client example in Java 17: java.net.http, no dependencies. Runs as one file:
//
//   java MeterdClient.java send INSTANCE_ID [COUNT]     send COUNT (default 3) events of 2.5 units, now
//   java MeterdClient.java preview INSTANCE_ID          the instance's usage and charge so far
//   java MeterdClient.java verify SECRET SIGNATURE_HEADER BODY_FILE [--no-age-check]
//                                                      check a notification's Meterd-Signature
//
// Environment: METERD_URL (default http://127.0.0.1:9464), METERD_TOKEN (the bearer token, when
// the server has `server.token_env` set). Exit codes: 0 ok, 1 refused or failed, 2 bad usage.
// JSON is read by the small parser at the end (numbers as BigDecimal, never double).

import java.math.BigDecimal;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

public class MeterdClient {
    static final String URL = System.getenv().getOrDefault("METERD_URL", "http://127.0.0.1:9464").replaceAll("/+$", "");
    static final String TOKEN = System.getenv("METERD_TOKEN");
    static final long MAX_AGE_SECS = 300;
    static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

    /** A call or a check that did not succeed; the message says why. */
    static class Failed extends Exception {
        Failed(String message) { super(message); }
    }

    public static void main(String[] args) {
        try {
            System.exit(run(args));
        } catch (Failed e) {
            System.err.println(e.getMessage());
            System.exit(1);
        } catch (Exception e) {
            System.err.println("failed: " + e);
            System.exit(1);
        }
    }

    static int run(String[] a) throws Exception {
        if ((a.length == 2 || a.length == 3) && a[0].equals("send")) return send(a[1], a.length == 3 ? Integer.parseInt(a[2]) : 3);
        if (a.length == 2 && a[0].equals("preview")) return preview(a[1]);
        if ((a.length == 4 || a.length == 5) && a[0].equals("verify")) {
            if (a.length == 5 && !a[4].equals("--no-age-check")) return usage();
            return verify(a[1], a[2], Path.of(a[3]), a.length == 4);
        }
        return usage();
    }

    static int usage() {
        System.err.println("usage: java MeterdClient.java send INSTANCE_ID [COUNT] | preview INSTANCE_ID | verify SECRET SIGNATURE_HEADER BODY_FILE [--no-age-check]");
        return 2;
    }

    /** One HTTP call: the parsed JSON answer, or Failed with the server's error message. */
    static Object call(HttpRequest.Builder req) throws Exception {
        if (TOKEN != null && !TOKEN.isEmpty()) req.header("Authorization", "Bearer " + TOKEN);
        HttpResponse<String> resp;
        try {
            resp = HTTP.send(req.timeout(Duration.ofSeconds(30)).build(), HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
        } catch (java.io.IOException e) {
            throw new Failed("cannot reach meterd at " + URL + ": " + e);
        }
        if (resp.statusCode() / 100 != 2) {
            String msg = resp.body();
            try {
                Object err = ((Map<?, ?>) Json.parse(msg)).get("error");
                if (err != null) msg = err.toString();
            } catch (RuntimeException ignored) {
                // not JSON: show it as it is
            }
            throw new Failed("meterd answered " + resp.statusCode() + ": " + msg);
        }
        return Json.parse(resp.body());
    }

    static int send(String instanceId, int count) throws Exception {
        String now = Instant.now().truncatedTo(ChronoUnit.SECONDS).toString();
        String run = Instant.now().getEpochSecond() + "-" + ProcessHandle.current().pid();
        // `id` makes a resend of the same event a duplicate, never counted twice. Quantities are
        // decimal strings: meterd never reads usage through a float.
        StringBuilder body = new StringBuilder("[");
        for (int i = 1; i <= count; i++) {
            if (i > 1) body.append(',');
            body.append("{\"id\":").append(Json.quote("java-" + run + "-" + i))
                .append(",\"instance_id\":").append(Json.quote(instanceId))
                .append(",\"quantity\":\"2.5\",\"time\":").append(Json.quote(now)).append('}');
        }
        body.append(']');
        Map<?, ?> r = (Map<?, ?>) call(HttpRequest.newBuilder(URI.create(URL + "/v1/events"))
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body.toString(), StandardCharsets.UTF_8)));
        List<?> rejected = (List<?>) r.get("rejected");
        int accepted = ((BigDecimal) r.get("accepted")).intValueExact();
        int duplicates = ((BigDecimal) r.get("duplicates")).intValueExact();
        System.out.printf("sent %d events: accepted %d, duplicates %d, rejected %d%n",
            accepted + duplicates + rejected.size(), accepted, duplicates, rejected.size());
        for (Object o : rejected) { // each refused event says what to fix
            Map<?, ?> e = (Map<?, ?>) o;
            System.out.printf("  event #%s %s: %s%n", e.get("index"), e.get("id") == null ? "-" : e.get("id"), e.get("error"));
        }
        // A stop-before-excess package used up: the app must stop this instance's service now.
        Object exhausted = r.get("quota_exhausted");
        if (exhausted != null) {
            for (Object inst : (List<?>) exhausted) {
                System.out.printf("  quota exhausted: %s - stop its service%n", inst);
            }
        }
        return rejected.isEmpty() ? 0 : 1;
    }

    static int preview(String instanceId) throws Exception {
        String q = "instance=" + URLEncoder.encode(instanceId, StandardCharsets.UTF_8);
        Map<?, ?> p = (Map<?, ?>) call(HttpRequest.newBuilder(URI.create(URL + "/v1/preview?" + q)).GET());
        boolean found = false;
        for (Object o : (List<?>) p.get("instances")) {
            Map<?, ?> i = (Map<?, ?>) o;
            if (!instanceId.equals(i.get("instance_id"))) continue;
            found = true;
            System.out.printf("preview %s: usage %s %s, charge %s %s%n", i.get("instance_id"), i.get("usage"), i.get("unit"), i.get("charge"), i.get("currency"));
        }
        if (!found) throw new Failed("preview: no usage for " + instanceId + " yet");
        for (Object o : (List<?>) p.get("rows")) {
            Map<?, ?> r = (Map<?, ?>) o;
            if (instanceId.equals(r.get("instance_id"))) {
                System.out.printf("  %s .. %s %s: usage %s, charge %s%n", r.get("begin_time"), r.get("end_time"), r.get("state"), r.get("usage"), r.get("charge"));
            }
        }
        return 0;
    }

    /**
     * Checks {@code Meterd-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>} over {@code <t>.}
     * followed by the exact body bytes, the key being the secret's UTF-8 bytes. Returns t.
     */
    static long verifySignature(String secret, String header, byte[] body, boolean checkAge, long now) throws Exception {
        String t = "", v1 = "";
        for (String part : header.split(",")) {
            if (part.startsWith("t=")) t = part.substring(2);
            else if (part.startsWith("v1=")) v1 = part.substring(3);
        }
        if (!t.matches("[0-9]{1,18}") || !v1.matches("[0-9a-f]{64}")) throw new Failed("the header is not t=<unix seconds>,v1=<64 hex digits>");
        long ts = Long.parseLong(t);
        if (checkAge && Math.abs(now - ts) > MAX_AGE_SECS) {
            throw new Failed("timestamp " + ts + " is more than 5 minutes from now (" + now + "): a replay or a wrong clock");
        }
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(secret.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
        mac.update((t + ".").getBytes(StandardCharsets.US_ASCII));
        byte[] expected = mac.doFinal(body);
        // MessageDigest.isEqual compares in constant time.
        if (!MessageDigest.isEqual(expected, HexFormat.of().parseHex(v1))) throw new Failed("the body or the secret does not match");
        return ts;
    }

    static int verify(String secret, String header, Path bodyFile, boolean checkAge) throws Exception {
        byte[] body = Files.readAllBytes(bodyFile);
        try {
            long t = verifySignature(secret, header, body, checkAge, Instant.now().getEpochSecond());
            System.out.println("signature valid (t=" + t + ")");
            return 0;
        } catch (Failed e) {
            throw new Failed("signature INVALID: " + e.getMessage());
        }
    }

    /** A minimal JSON reader: objects, arrays, strings, numbers (BigDecimal), true, false, null. */
    static final class Json {
        private final String s;
        private int i;

        private Json(String s) { this.s = s; }

        static Object parse(String text) {
            Json p = new Json(text);
            Object v = p.value();
            p.ws();
            if (p.i != text.length()) throw new IllegalArgumentException("trailing characters at " + p.i);
            return v;
        }

        static String quote(String v) {
            StringBuilder b = new StringBuilder("\"");
            for (char c : v.toCharArray()) {
                if (c == '"' || c == '\\') b.append('\\').append(c);
                else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
                else b.append(c);
            }
            return b.append('"').toString();
        }

        private void ws() { while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++; }

        private char peek() {
            ws();
            if (i >= s.length()) throw new IllegalArgumentException("unexpected end of JSON");
            return s.charAt(i);
        }

        private void expect(char c) {
            if (peek() != c) throw new IllegalArgumentException("expected '" + c + "' at " + i);
            i++;
        }

        private Object value() {
            char c = peek();
            if (c == '{') {
                Map<String, Object> m = new LinkedHashMap<>();
                i++;
                if (peek() == '}') { i++; return m; }
                do { String k = string(); expect(':'); m.put(k, value()); } while (comma());
                expect('}');
                return m;
            }
            if (c == '[') {
                List<Object> l = new ArrayList<>();
                i++;
                if (peek() == ']') { i++; return l; }
                do { l.add(value()); } while (comma());
                expect(']');
                return l;
            }
            if (c == '"') return string();
            for (String w : new String[] {"true", "false", "null"}) {
                if (s.startsWith(w, i)) { i += w.length(); return w.equals("null") ? null : Boolean.valueOf(w); }
            }
            int start = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) i++;
            return new BigDecimal(s.substring(start, i));
        }

        private boolean comma() {
            if (peek() == ',') { i++; return true; }
            return false;
        }

        private String string() {
            expect('"');
            StringBuilder b = new StringBuilder();
            while (true) {
                char c = s.charAt(i++);
                if (c == '"') return b.toString();
                if (c != '\\') { b.append(c); continue; }
                char e = s.charAt(i++);
                switch (e) {
                    case 'n' -> b.append('\n');
                    case 't' -> b.append('\t');
                    case 'r' -> b.append('\r');
                    case 'b' -> b.append('\b');
                    case 'f' -> b.append('\f');
                    case 'u' -> { b.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; }
                    default -> b.append(e);
                }
            }
        }
    }
}
