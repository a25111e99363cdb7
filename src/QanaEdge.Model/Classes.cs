namespace QanaEdge.Model;

/// <summary>The seven HAM10000 diagnoses, in the order every package and report uses.</summary>
public static class Classes
{
    /// <summary>Class codes in canonical (alphabetical) order: logit k belongs to Codes[k].</summary>
    public static readonly IReadOnlyList<string> Codes = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"];

    /// <summary>Codes whose sum of probabilities forms the malignancy (referral) score.</summary>
    public static readonly IReadOnlyList<string> Malignant = ["akiec", "bcc", "mel"];

    public static int Count => Codes.Count;

    /// <summary>Index of a class code, or −1 when it is not one of the seven.</summary>
    public static int IndexOf(string code)
    {
        for (int i = 0; i < Codes.Count; i++)
            if (string.Equals(Codes[i], code, StringComparison.OrdinalIgnoreCase)) return i;
        return -1;
    }
}
