// The SmsService of the Keycloak SMS authenticator (github.com/dasniko/keycloak-2fa-sms-authenticator) that
// sends through the Zeckta relay. Copy it into the authenticator's `gateway` package, add
// `implements SmsService`, and return it from SmsServiceFactory.get() when not in simulation mode:
//
//     return new ZecktaSmsService(System.getenv("ZECKTA_URL"), System.getenv("ZECKTA_API_KEY"), config.get("senderId"));
//
// Plain JDK (java.net.http): nothing to add to the authenticator's dependencies.

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;

public class ZecktaSmsService {

    private final HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    private final String baseUrl; // https://otp.example.com
    private final String apiKey; // zk_live_...: keep it in the environment, not in the realm's configuration
    private final String sender; // an APPROVED sender name of the workspace

    public ZecktaSmsService(String baseUrl, String apiKey, String sender) {
        this.baseUrl = baseUrl;
        this.apiKey = apiKey;
        this.sender = sender;
    }

    /** Queues `message` (the authenticator's text, code included) to `phoneNumber` (E.164). */
    public void send(String phoneNumber, String message) {
        String body = "{\"dest\":" + json(phoneNumber) + ",\"src\":" + json(sender) + ",\"text\":" + json(message)
                + ",\"purpose\":\"LOGIN\"}";
        HttpRequest request = HttpRequest.newBuilder(URI.create(baseUrl + "/v1/messaging/sms"))
                .timeout(Duration.ofSeconds(10))
                .header("Content-Type", "application/json")
                .header("Authorization", "Bearer " + apiKey)
                .POST(HttpRequest.BodyPublishers.ofString(body))
                .build();
        HttpResponse<String> response;
        try {
            response = client.send(request, HttpResponse.BodyHandlers.ofString());
        } catch (IOException | InterruptedException e) {
            throw new RuntimeException("the SMS relay could not be reached", e);
        }
        if (response.statusCode() != 202) {
            // The envelope's `code` and `message` say why (429 DESTINATION_RATE_LIMITED, 402, ...).
            throw new RuntimeException("the SMS relay refused the SMS: HTTP " + response.statusCode() + " " + response.body());
        }
    }

    private static String json(String value) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : value.toCharArray()) {
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                default -> {
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        return out.append('"').toString();
    }

    /** For trying it from a shell: ZECKTA_URL=... ZECKTA_API_KEY=... java ZecktaSmsService.java ACME +233... "text" */
    public static void main(String[] args) {
        new ZecktaSmsService(System.getenv("ZECKTA_URL"), System.getenv("ZECKTA_API_KEY"), args[0]).send(args[1], args[2]);
        System.out.println("queued");
    }
}
